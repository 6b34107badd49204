"""Page captions at ingest: one window of ``vlm.concurrency`` requests across every document of a run while the next
pages render, each caption stored and its page re-indexed (BM25 text with the caption, the caption vector), a
document's stage recorded when its last caption is in. A document whose captions fail stays pending, with the
reason, for the next ingest to retry; the others go on."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from schemas.documents import Document
from schemas.errors import PageLensError
from schemas.results import FileOutcome
from schemas.settings import Settings
from store.catalog import PageRecord
from store.library import Library, page_point
from vlm.backend import VlmBackend
from vlm.runtime import Models
from vlm.siglip import SiglipEncoder

log = logging.getLogger(__name__)


class Captioner:
    """Captions complete documents with the configured VLM (``models``: built on first need, the reason kept when
    none is)."""

    def __init__(self, settings: Settings, library: Library, models: Models) -> None:
        self.s = settings
        self.catalog = library.catalog
        self.files = library.files
        self.index = library.index
        self.models = models
        self._vlm_error: str | None = None

    def wanted(self) -> bool:
        return self.s.vlm.captions

    def encoder(self) -> SiglipEncoder | None:
        return self.models.maybe(self.models.image_encoder)

    def vlm(self) -> VlmBackend | None:
        """The captioning VLM; None (``_vlm_error`` says why) when none is configured or it cannot load."""
        try:
            return self.models.vlm()
        except PageLensError as e:  # ModelUnavailable (remembered by ``models``), or a bad backend name
            self._vlm_error = e.message
            return None

    def version(self) -> str:
        from vlm import prompts

        backend = self.vlm()
        model = backend.model if backend else "none"
        return f"{model}:{prompts.prompt_hash(prompts.SYSTEM, prompts.CAPTION)}@{self.s.vlm.max_pixels}px"

    def caption_documents(self, docs: Sequence[Document]) -> dict[str, str]:
        """Caption every page of complete documents and index the captions (BM25 text + the ``caption`` vector
        when the encoder is loaded). One window of ``vlm.concurrency`` requests runs across all the documents (no
        drain between them) while the next pages render here; at most twice that many page images exist at once,
        whatever the documents' lengths. Each document's stage is recorded when its last caption is stored.
        Returns {doc_id: why} for the documents whose captions failed (their stage stays pending)."""
        from store.pages import render_for_model
        from vlm.answering import caption
        from vlm.pages import PageInput

        backend = self.vlm()
        if backend is None:
            return {d.doc_id: self._vlm_error or "no VLM" for d in docs}
        encoder = self.encoder()
        if encoder is not None:
            self.index.ensure_dense("caption", encoder.dim)
        concurrency = self.s.vlm.concurrency
        in_flight: deque[tuple[Document, PageRecord, Future[str]]] = deque()
        ready: dict[str, list[tuple[PageRecord, str]]] = {}
        left = {d.doc_id: d.page_count for d in docs}
        failed: dict[str, str] = {}

        def settle(block: bool) -> None:
            while in_flight and (block or in_flight[0][2].done() or len(in_flight) > 2 * concurrency):
                doc, rec, fut = in_flight.popleft()
                if doc.doc_id in failed:
                    continue
                try:
                    text = fut.result()
                except Exception as e:  # this document's captions failed; the others go on
                    failed[doc.doc_id] = e.message if isinstance(e, PageLensError) else f"{e.__class__.__name__}: {e}"
                    ready.pop(doc.doc_id, None)
                    continue
                buf = ready.setdefault(doc.doc_id, [])
                buf.append((rec, text))
                left[doc.doc_id] -= 1
                if len(buf) >= self.s.ingest.batch_pages or left[doc.doc_id] == 0:
                    self._caption_batch(doc.doc_id, doc.collection, buf, encoder)
                    buf.clear()
                if left[doc.doc_id] == 0:
                    self._captioned(doc.doc_id)

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="caption") as pool:
            for doc in docs:
                try:
                    path = self.files.open_path(doc.doc_id)
                except PageLensError as e:
                    failed[doc.doc_id] = e.message
                    continue
                for rec in self.catalog.iter_pages(doc.doc_id):
                    if doc.doc_id in failed:
                        break
                    try:
                        img = render_for_model(path, rec.page.page_no, max_pixels=self.s.vlm.max_pixels,
                                               min_pixels=self.s.vlm.min_pixels)
                    except PageLensError as e:  # a page that cannot be drawn: this document stays pending
                        failed[doc.doc_id] = e.message
                        break
                    in_flight.append((doc, rec, pool.submit(caption, backend, PageInput(doc.doc_id, rec.page.page_no,
                                                                                         img, rec.table),
                                                            max_attempts=self.s.vlm.max_attempts)))
                    settle(block=False)
            settle(block=True)
        return failed

    def _captioned(self, doc_id: str) -> None:
        """A document's last caption is stored: vectors durable, then the caption stage recorded."""
        self.index.flush()
        doc = self.catalog.get_document(doc_id)
        if doc is not None:
            stages = {**doc.stages, "caption": self.version()}
            self.catalog.complete_document(doc_id, stages=stages, pending=[p for p in doc.pending if p != "caption"])

    def _caption_batch(self, doc_id: str, collection: str, done: list[tuple[PageRecord, str]],
                       encoder: SiglipEncoder | None) -> None:
        """Store a batch's captions and re-index its pages (BM25 text with the caption, the caption vector)."""
        batch = [rec for rec, _ in done]
        caps = {rec.page.page_no: text for rec, text in done}
        self.catalog.set_captions(doc_id, caps)
        dense = encoder.encode_texts([caps[r.page.page_no] for r in batch]) if encoder is not None else None
        self.index.update_vectors([
            page_point(r, collection, caption=caps[r.page.page_no],
                       dense={"caption": dense[k].tolist()} if dense is not None else {})
            for k, r in enumerate(batch)])

    def run(self, outcomes: dict[Path, FileOutcome], report: Callable[..., None]) -> None:
        """Caption the run's complete documents whose caption stage is missing or outdated, when a VLM is
        configured; otherwise leave the stage pending (said once)."""
        version = self.version()
        said = False
        todo: list[tuple[Path, FileOutcome, Document]] = []
        for path, o in list(outcomes.items()):
            doc = self.catalog.get_document(o.doc_id) if o.doc_id and o.status != "failed" else None
            if doc is None or doc.status != "complete" or doc.stages.get("caption") == version:
                continue
            if self.vlm() is None:
                if "caption" not in doc.pending:
                    self.catalog.complete_document(doc.doc_id, stages=doc.stages, pending=[*doc.pending, "caption"])
                if not said:
                    report(path.name, notice=f"Pages are not captioned: {self._vlm_error}")
                    said = True
                outcomes[path] = o.model_copy(update={"pending": sorted({*o.pending, "caption"})})
                continue
            todo.append((path, o, doc))
        if not todo:
            return
        pages = sum(d.page_count for _, _, d in todo)
        report(todo[0][0].name, notice=f"captioning {pages} pages of {len(todo)} documents, "
                                       f"{self.s.vlm.concurrency} requests at a time")
        failed = self.caption_documents([d for _, _, d in todo])
        for path, o, doc in todo:
            if doc.doc_id in failed:  # left pending, with the reason, for the next ingest to retry
                log.warning("captions of %s failed, left pending: %s", path.name, failed[doc.doc_id])
                if "caption" not in doc.pending:
                    self.catalog.complete_document(doc.doc_id, stages=doc.stages, pending=[*doc.pending, "caption"])
                outcomes[path] = o.model_copy(update={
                    "pending": sorted({*o.pending, "caption"}),
                    "warnings": [*o.warnings, f"captions failed: {failed[doc.doc_id]}"]})
                continue
            outcomes[path] = o.model_copy(update={"status": "ingested",
                                                  "pending": [p for p in o.pending if p != "caption"]})
