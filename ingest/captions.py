"""Page captions at ingest: one window of ``vlm.concurrency`` requests across every document of a run while the next
pages render, each caption stored and its page re-indexed (BM25 text with the caption, the caption vector), a
document's stage recorded when its last caption is in. A document whose captions fail stays pending, with the
reason, for the next ingest to retry; the others go on."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

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


class Then(Protocol):
    """What follows captions in the window: ``pages`` (a stored batch, captions set), ``finish`` (a document's
    caption stage recorded)."""

    def pages(self, doc_id: str, records: list[PageRecord]) -> None: ...

    def finish(self, doc_id: str) -> None: ...


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

    def window(self, then: Then | None = None) -> CaptionWindow | None:
        """A window to caption pages in as they are written (ingest: from the first page read), or None when no
        VLM is configured or it cannot load (``run`` then says so). ``then``: what follows each stored batch of
        captions and each document's recorded stage (the ingest embeds the captioned pages' text there)."""
        backend = self.vlm()
        return CaptionWindow(self, backend, self.encoder(), then) if backend is not None else None

    def caption_documents(self, docs: Sequence[Document]) -> dict[str, str]:
        """Caption every page of complete documents and index the captions (BM25 text + the ``caption`` vector
        when the encoder is loaded), in one window across all of them (``CaptionWindow``). Returns {doc_id: why}
        for the documents whose captions failed (their stage stays pending)."""
        window = self.window()
        if window is None:
            return {d.doc_id: self._vlm_error or "no VLM" for d in docs}
        try:
            for doc in docs:
                try:
                    path = self.files.open_path(doc.doc_id)
                except PageLensError as e:
                    window.fail(doc.doc_id, e.message)
                    continue
                window.add(doc.doc_id, doc.collection, path, self.catalog.iter_pages(doc.doc_id))
                window.complete(doc.doc_id)
        finally:
            failed = window.close()
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

    def run(self, outcomes: dict[Path, FileOutcome], report: Callable[..., None],
            failed_while_read: dict[str, str] | None = None) -> None:
        """Caption the run's complete documents whose caption stage is missing or outdated, when a VLM is
        configured; otherwise leave the stage pending (said once). ``failed_while_read``: {doc_id: why} of the
        documents whose captions already failed in this run's window (left pending, not tried again)."""
        version = self.version()
        said = False
        todo: list[tuple[Path, FileOutcome, Document]] = []
        failed = dict(failed_while_read or {})
        for path, o in list(outcomes.items()):
            doc = self.catalog.get_document(o.doc_id) if o.doc_id and o.status != "failed" else None
            if doc is None or doc.status != "complete" or doc.stages.get("caption") == version:
                continue
            if doc.doc_id in failed:
                todo.append((path, o, doc))
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
        fresh = [d for _, _, d in todo if d.doc_id not in failed]
        if fresh:
            report(todo[0][0].name, notice=f"captioning {sum(d.page_count for d in fresh)} pages of {len(fresh)} "
                                           f"documents, {self.s.vlm.concurrency} requests at a time")
            failed.update(self.caption_documents(fresh))
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


class CaptionWindow:
    """One window of ``vlm.concurrency`` caption requests, fed pages as they come (``add``: from the reading loop
    as each batch is written, or from the catalog), each rendered here while earlier pages' requests are in
    flight; at most twice that many page images exist at once. Captions are stored and their pages re-indexed a
    batch at a time; a document's stage is recorded once its last caption is stored *and* it is ``complete``
    (read to the end: its page count known). ``forget`` drops a document (its file failed), ``close`` waits for
    the rest and returns {doc_id: why} for the documents whose captions failed. ``then`` is told of each stored
    batch (its pages with their captions) and each recorded stage, in the window's thread, while later pages'
    requests stay in flight. Used from one thread."""

    def __init__(self, captioner: Captioner, backend: VlmBackend, encoder: SiglipEncoder | None,
                 then: Then | None = None) -> None:
        self.c = captioner
        self.backend = backend
        self.encoder = encoder
        self.then = then
        self.concurrency = captioner.s.vlm.concurrency
        if encoder is not None:
            captioner.index.ensure_dense("caption", encoder.dim)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="caption")
        self.in_flight: deque[tuple[str, PageRecord, Future[str]]] = deque()
        self.ready: dict[str, list[tuple[PageRecord, str]]] = {}
        self.added: dict[str, int] = {}
        self.stored: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.collection: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.forgotten: set[str] = set()

    def add(self, doc_id: str, collection: str, path: Path, records: Iterable[PageRecord]) -> None:
        from store.pages import render_for_model
        from vlm.answering import caption
        from vlm.pages import PageInput

        self.collection[doc_id] = collection
        v = self.c.s.vlm
        for rec in records:
            if doc_id in self.failed or doc_id in self.forgotten:
                return
            self.added[doc_id] = self.added.get(doc_id, 0) + 1
            try:
                img = render_for_model(path, rec.page.page_no, max_pixels=v.max_pixels, min_pixels=v.min_pixels)
            except PageLensError as e:  # a page that cannot be drawn: this document stays pending
                self.fail(doc_id, e.message)
                return
            page = PageInput(doc_id, rec.page.page_no, img, rec.table)
            self.in_flight.append((doc_id, rec, self.pool.submit(caption, self.backend, page,
                                                                 max_attempts=v.max_attempts)))
            self._settle(block=False)

    def complete(self, doc_id: str) -> None:
        """``doc_id`` is read to the end (every page added): its stage is recorded when their captions are in."""
        self.expected[doc_id] = self.added.get(doc_id, 0)
        self._store(doc_id, last=True)

    def fail(self, doc_id: str, why: str) -> None:
        self.failed.setdefault(doc_id, why)
        self.ready.pop(doc_id, None)

    def forget(self, doc_id: str) -> None:
        """Its file failed (its rows are being removed): what is still in flight for it is dropped."""
        self.forgotten.add(doc_id)
        self.ready.pop(doc_id, None)

    def abort(self) -> None:
        """The run is stopping on an error: nothing more is waited for or stored."""
        self.in_flight.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> dict[str, str]:
        try:
            self._settle(block=True)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        for doc_id in self.collection:  # added but never completed (the run stopped): nothing is recorded
            if doc_id not in self.expected and doc_id not in self.forgotten:
                self.failed.setdefault(doc_id, "the run stopped before its pages were all read")
        return {d: why for d, why in self.failed.items() if d not in self.forgotten}

    def _settle(self, block: bool) -> None:
        while self.in_flight and (block or self.in_flight[0][2].done() or len(self.in_flight) > 2 * self.concurrency):
            doc_id, rec, fut = self.in_flight.popleft()
            if doc_id in self.failed or doc_id in self.forgotten:
                continue
            try:
                text = fut.result()
            except Exception as e:  # this document's captions failed; the others go on
                self.fail(doc_id, e.message if isinstance(e, PageLensError) else f"{e.__class__.__name__}: {e}")
                continue
            self.ready.setdefault(doc_id, []).append((rec, text))
            self._store(doc_id, last=False)

    def _store(self, doc_id: str, last: bool) -> None:
        """Store the document's finished captions when a batch is full or its last one is in; then, if it is
        complete, record its stage."""
        if doc_id in self.failed or doc_id in self.forgotten:
            return
        buf = self.ready.get(doc_id, [])
        done = self.stored.get(doc_id, 0) + len(buf)
        whole = self.expected.get(doc_id) == done
        if buf and (len(buf) >= self.c.s.ingest.batch_pages or whole):
            self.c._caption_batch(doc_id, self.collection[doc_id], buf, self.encoder)
            self.stored[doc_id] = done
            self.ready[doc_id] = []
            if self.then is not None:
                self.then.pages(doc_id, [PageRecord(rec.page.model_copy(update={"caption": text}), rec.table)
                                         for rec, text in buf])
        if whole and (last or buf):
            self.c._captioned(doc_id)
            if self.then is not None:
                self.then.finish(doc_id)
