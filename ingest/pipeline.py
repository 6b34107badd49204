"""The ingest pipeline: plan each file from its content hash and recorded stages, read what is needed in the
reader workers, then write vectors and catalog rows — vectors first, the document marked complete last, so a
killed run leaves only ``partial`` documents, which the next run cleans up or redoes."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest import pdf
from ingest.ocr import SPLITTER_VERSION, engine_version
from ingest.reader import PageOut, ReaderPool, ReadJob, ReadOptions
from schemas.documents import Document, Page
from schemas.errors import InputError, ModelUnavailable, PageLensError, StoreError, TooLarge
from schemas.ids import doc_id_of_file, point_id
from schemas.results import ErrorInfo, FileOutcome, IngestReport
from schemas.settings import Settings
from store import bm25
from store.catalog import Catalog, PageRecord
from store.files import FileStore
from store.vectors import PagePoint, VectorIndex
from vlm.backend import VlmBackend
from vlm.siglip import SiglipEncoder

log = logging.getLogger(__name__)

EncoderProvider = Callable[[], SiglipEncoder]
VlmProvider = Callable[[], VlmBackend]


@dataclass(frozen=True)
class Progress:
    """Reported after each file event and page batch. ``pages_total`` counts pages of files opened so far."""

    files_total: int
    files_done: int
    pages_done: int
    pages_total: int
    current: str
    notice: str | None = None


ProgressFn = Callable[[Progress], None]


@dataclass
class _Plan:
    path: Path
    name: str  # the file as the user knows it (the catalog's name, the report's path)
    doc_id: str
    kind: Literal["pdf", "image"]
    mode: Literal["full", "render"]
    previously_complete: bool
    started: float = field(default_factory=time.perf_counter)
    pages: int = 0
    page_count: int = 0
    embedded: bool = True  # every page got an image vector
    parts_left: int = 1  # page ranges still being read (a long file is read by several readers at once)
    failed: bool = False  # recorded as failed: later events of its other parts are dropped
    warnings: list[str] = field(default_factory=list)  # the reader's, logged
    words_failed: list[str] = field(default_factory=list)  # pages whose words could not be read (OCR failed)
    notes: list[str] = field(default_factory=list)  # for the user's report (e.g. the file moved collection)


class Ingestor:
    """Ingests files into the catalog, file store and vector index. Build once per process (see app.service)."""

    def __init__(self, settings: Settings, catalog: Catalog, files: FileStore, index: VectorIndex,
                 encoder: EncoderProvider | None, vlm: VlmProvider | None = None) -> None:
        self.s = settings
        self.catalog = catalog
        self.files = files
        self.index = index
        self._encoder_provider = encoder
        self._encoder: SiglipEncoder | None = None
        self._encoder_error: str | None = None
        self._vlm_provider = vlm
        self._vlm: VlmBackend | None = None
        self._vlm_error: str | None = None
        self._names: dict[Path, str] = {}

    # -- versions ---------------------------------------------------------------------------------
    def words_version(self) -> str:
        i = self.s.ingest
        headings = "" if i.outline_headings else ",no-outline"
        return f"{pdf.library_version()}+{engine_version()}@{i.ocr_dpi:g}dpi,min{i.ocr_min_words}{headings}"

    def embed_version(self) -> str:
        return f"open_clip:{self.s.encoder.model}@{self.s.ingest.render_dpi:g}dpi"

    def encoder(self) -> SiglipEncoder | None:
        """The encoder, loaded on first need; None (with ``encoder_error`` set) when it cannot load."""
        if self._encoder is None and self._encoder_error is None:
            if self._encoder_provider is None or not self.s.encoder.enabled:
                self._encoder_error = "the SigLIP encoder is disabled (PAGELENS_ENCODER__ENABLED=false)"
            else:
                try:
                    self._encoder = self._encoder_provider()
                    self.index.ensure_dense("image", self._encoder.dim)
                except ModelUnavailable as e:
                    self._encoder_error = e.message
        return self._encoder

    @property
    def encoder_error(self) -> str | None:
        return self._encoder_error

    def captions_wanted(self) -> bool:
        return self.s.vlm.captions

    def vlm(self) -> VlmBackend | None:
        """The captioning VLM, built on first need; None (with the reason kept) when none is configured."""
        if self._vlm is None and self._vlm_error is None:
            if self._vlm_provider is None:
                self._vlm_error = "no VLM backend"
            else:
                try:
                    self._vlm = self._vlm_provider()
                except PageLensError as e:
                    self._vlm_error = e.message
        return self._vlm

    def caption_version(self) -> str:
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
            stages = {**doc.stages, "caption": self.caption_version()}
            self.catalog.complete_document(doc_id, stages=stages, pending=[p for p in doc.pending if p != "caption"])

    def _caption_batch(self, doc_id: str, collection: str, done: list[tuple[PageRecord, str]],
                       encoder: SiglipEncoder | None) -> None:
        """Store a batch's captions and re-index its pages (BM25 text with the caption, the caption vector)."""
        batch = [rec for rec, _ in done]
        caps = {rec.page.page_no: text for rec, text in done}
        self.catalog.set_captions(doc_id, caps)
        dense = encoder.encode_texts([caps[r.page.page_no] for r in batch]) if encoder is not None else None
        self.index.update_vectors([
            PagePoint(id=point_id(doc_id, r.page.page_no), doc_id=doc_id, page=r.page.page_no,
                      collection=collection,
                      text=bm25.page_vector(r.table.texts, caps[r.page.page_no], r.page.headings),
                      dense={"caption": dense[k].tolist()} if dense is not None else {})
            for k, r in enumerate(batch)])

    # -- reconcile --------------------------------------------------------------------------------
    def reconcile(self, keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """Remove what a killed run left behind: documents still ``partial`` (their vectors, pages, row and
        stored file) and stored files no document row claims, except ``keep`` (about to be redone). Returns the
        doc ids removed."""
        removed = []
        for doc_id in self.catalog.partial_documents():
            if doc_id in keep:
                continue
            self.remove(doc_id)
            removed.append(doc_id)
        # stored files of batch members a killed run copied in but never started: no catalog row at all
        stored = self.files.doc_ids() - set(keep)
        for doc_id in stored - self.catalog.known_ids(sorted(stored)):
            self.files.delete(doc_id)
            removed.append(doc_id)
        self.files.drop_incoming()
        return removed

    def remove(self, doc_id: str) -> None:
        """Delete a document everywhere: vectors first, then rows, then the stored file."""
        self.index.delete_document(doc_id)
        self.index.flush()
        self.catalog.delete_document(doc_id)
        self.files.delete(doc_id)

    # -- planning ---------------------------------------------------------------------------------
    def _plan(self, path: Path, name: str, collection: str) -> _Plan | FileOutcome:
        size = path.stat().st_size
        limit = self.s.ingest.max_file_mb * 1024 * 1024
        if size > limit:
            raise TooLarge(f"{path.name} is {size / 2**20:.0f} MB, over the {self.s.ingest.max_file_mb:g} MB "
                           "limit; split it or raise PAGELENS_INGEST__MAX_FILE_MB")
        kind = pdf.sniff_kind(path)
        doc_id = doc_id_of_file(path)
        doc = self.catalog.get_document(doc_id)
        if doc is None or doc.status != "complete" or doc.stages.get("words") != self.words_version() \
                or doc.stages.get("index") != bm25.VERSION \
                or (doc.words_sources.get("ocr") and doc.stages.get("ocr_words") != SPLITTER_VERSION):
            return _Plan(path, name, doc_id, kind, "full", previously_complete=False)
        if self.index.count(doc_id) < doc.page_count:
            # the catalog says complete but this vector store lacks its points (a catalog shared by two embedded
            # stores, or a store restored from another time): read it again rather than report "unchanged"
            log.warning("%s: the vector store lacks %s's pages; reading it again", path.name, doc_id[:12])
            return _Plan(path, name, doc_id, kind, "full", previously_complete=False)
        self.catalog.add_name(doc_id, name)
        moved = doc.collection != collection
        notes = [f"moved from collection '{doc.collection}' to '{collection}'"] if moved else []
        if moved:
            self.index.set_collection(doc_id, collection)
            self.index.flush()
            self.catalog.set_collection(doc_id, collection)
        if doc.stages.get("embed") != self.embed_version():
            return _Plan(path, name, doc_id, kind, "render", previously_complete=True, notes=notes)
        return FileOutcome(path=name, doc_id=doc_id, status="ingested" if moved else "unchanged",
                           pages=doc.page_count, pending=doc.pending, warnings=notes)

    # -- run --------------------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path], *, collection: str | None = None, password: str | None = None,
               on_progress: ProgressFn | None = None, workers: int = 1,
               names: dict[Path, str] | None = None) -> IngestReport:
        """Ingest ``paths`` (files). Never raises for a bad file: each gets its FileOutcome. When a store fails
        mid-run (the catalog database is gone), the run stops: finished files keep their outcome, the rest are
        reported failed with the store's error, and the next run reconciles what was half-written.

        ``names``: how the user knows a file when that is not its path (an upload is saved under a server folder
        but catalogued and reported under the client's file name)."""
        t0 = time.perf_counter()
        outcomes: dict[Path, FileOutcome] = {}
        self._names = names or {}
        try:
            return self._run(paths, outcomes, collection, password, on_progress, workers, t0)
        except StoreError as e:
            log.error("ingest stopped: %s", e.message)
            err = ErrorInfo(code=e.code, message=f"not ingested: {e.message}")
            files = [outcomes.get(p) or FileOutcome(path=self._name(p), doc_id=None, status="failed", error=err)
                     for p in paths]
            return IngestReport(files=files, seconds=time.perf_counter() - t0)

    def _name(self, path: Path) -> str:
        return self._names.get(path, str(path))

    def _run(self, paths: Sequence[Path], outcomes: dict[Path, FileOutcome], collection: str | None,
             password: str | None, on_progress: ProgressFn | None, workers: int, t0: float) -> IngestReport:
        coll = collection or self.s.default_collection
        plans: list[_Plan] = []
        aliases: list[tuple[str, Path]] = []
        pages_done = pages_total = 0

        def report(current: str, notice: str | None = None) -> None:
            if on_progress:
                on_progress(Progress(len(paths), len(outcomes), pages_done, pages_total, current, notice))

        for path in paths:
            try:
                plan = self._plan(path, self._name(path), coll)
            except StoreError:
                raise
            except PageLensError as e:
                outcomes[path] = FileOutcome(path=self._name(path), doc_id=None, status="failed",
                                             error=ErrorInfo(code=e.code, message=e.message))
                report(path.name)
                continue
            except OSError as e:
                outcomes[path] = FileOutcome(path=self._name(path), doc_id=None, status="failed",
                                             error=ErrorInfo(code="unreadable_file",
                                                             message=f"{self._name(path)} cannot be read: "
                                                                     f"{e.strerror}"))
                report(path.name)
                continue
            if isinstance(plan, FileOutcome):
                outcomes[path] = plan
                report(path.name)
                continue
            if any(p.doc_id == plan.doc_id for p in plans):  # same bytes twice in one run
                aliases.append((plan.doc_id, path))
                continue
            plans.append(plan)

        self.reconcile(keep={p.doc_id for p in plans})
        encoder = self.encoder() if plans else None
        if plans and encoder is None:  # said once per run
            report("", notice=f"Page images are not embedded: {self.encoder_error}")
        for plan in [p for p in plans if p.mode == "render" and encoder is None]:
            # a pending embed stage that still cannot run: nothing to read, nothing new written
            doc = self.catalog.get_document(plan.doc_id)
            outcomes[plan.path] = FileOutcome(path=plan.name, doc_id=plan.doc_id,
                                              status="ingested" if plan.notes else "unchanged",  # moved
                                              pages=doc.page_count if doc else 0, pending=doc.pending if doc else [],
                                              warnings=plan.notes)
            plans.remove(plan)
        for plan in plans:
            if plan.mode == "full":
                self.files.put(plan.doc_id, plan.path)
        # read the stored copy (what the catalog describes); the original when an older run did not keep one
        # an encrypted PDF opened with the password is stored decrypted, so its pages render later without it
        # (encryption at rest is the storage's job: see README "Encrypted PDFs")
        jobs = [ReadJob(job_id=n, path=self.files.path_of(p.doc_id) if self.files.has(p.doc_id) else p.path,
                        kind=p.kind, password=password, mode=p.mode, render=encoder is not None, name=p.path.name,
                        keep_decrypted=p.mode == "full" and self.files.has(p.doc_id), split=workers)
                for n, p in enumerate(plans)]

        i = self.s.ingest
        opts = ReadOptions(render_dpi=i.render_dpi, ocr_dpi=i.ocr_dpi, max_render_pixels=i.max_render_pixels,
                           ocr_min_words=i.ocr_min_words, max_pages=i.max_pages, memory_mb=i.worker_memory_mb,
                           batch_pages=i.batch_pages, outline_headings=i.outline_headings)
        pool = ReaderPool(opts, workers=workers, timeout_s=i.file_timeout_s)
        for ev in pool.run(jobs):
            plan = plans[ev.job.job_id]
            if plan.failed:  # another part of this file failed: what its other parts still send is dropped
                continue
            t_busy = time.perf_counter()
            try:
                if ev.kind == "started" and not ev.job.is_part:  # the file's own time, not its wait for a reader
                    plan.started = time.perf_counter()
                elif ev.kind == "opened":  # from the file's first part: its length and the ranges it is read in
                    plan.page_count, ranges = ev.payload
                    plan.parts_left = len(ranges)
                    pages_total += plan.page_count
                    self._opened(plan, coll)
                elif ev.kind == "pages":
                    self._pages(plan, ev.payload, coll, encoder)
                    pages_done += len(ev.payload)
                elif ev.kind == "done":
                    plan.parts_left -= 1
                    if plan.parts_left == 0:
                        outcomes[plan.path] = self._done(plan, coll, encoder)
                elif ev.kind == "failed":
                    code, message = ev.payload
                    outcomes[plan.path] = self._failed(plan, code, message)
                    pool.cancel(ev.job)
            except StoreError as e:  # the catalog is gone: stop (nothing can be recorded); the next run reconciles
                outcomes[plan.path] = FileOutcome(path=plan.name, doc_id=plan.doc_id, status="failed",
                                                  error=ErrorInfo(code=e.code, message=e.message))
                raise
            except PageLensError as e:  # an error on one file: record it, abandon the file, go on
                outcomes[plan.path] = self._failed(plan, e.code, e.message)
                pool.cancel(ev.job)
            pool.add_busy(time.perf_counter() - t_busy)
            report(plan.path.name)
        if self.captions_wanted():
            self._caption_pass(outcomes, report)
        if any(o.status == "ingested" for o in outcomes.values()):
            self.index.optimize()
        for doc_id, path in aliases:  # the same bytes under another name share the first one's fate
            first = next(o for o in outcomes.values() if o.doc_id == doc_id)
            if first.status == "failed":
                outcomes[path] = first.model_copy(update={"path": self._name(path), "seconds": 0.0})
                continue
            self.catalog.add_name(doc_id, self._name(path))
            outcomes[path] = FileOutcome(path=self._name(path), doc_id=doc_id, status="unchanged", pages=first.pages,
                                         pending=first.pending)
        ordered = [outcomes[p] for p in paths if p in outcomes]
        return IngestReport(files=ordered, seconds=time.perf_counter() - t0,
                            reader_peak_mb=round(pool.peak_rss_mb, 1) if plans else 0.0)

    def _caption_pass(self, outcomes: dict[Path, FileOutcome], report: Callable[..., None]) -> None:
        """Caption the run's complete documents whose caption stage is missing or outdated, when a VLM is
        configured; otherwise leave the stage pending (said once)."""
        version = self.caption_version()
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

    # -- event handlers ---------------------------------------------------------------------------
    def _opened(self, plan: _Plan, collection: str) -> None:
        if plan.mode == "full":
            self.catalog.begin_document(doc_id=plan.doc_id, name=plan.name, kind=plan.kind,
                                        collection=collection, size_bytes=plan.path.stat().st_size,
                                        page_count=plan.page_count)

    def _pages(self, plan: _Plan, batch: list[PageOut], collection: str, encoder: SiglipEncoder | None) -> None:
        if plan.mode == "full":  # the readers sent the words encoded and their sparse vector: nothing to decode
            records = [PageRecord(Page(doc_id=plan.doc_id, page_no=p.page_no, width_pt=p.width_pt,
                                       height_pt=p.height_pt, rotation=p.rotation, words_source=p.words_source,
                                       word_count=p.word_count, headings=p.headings), p.blob) for p in batch]
        else:
            records = self.catalog.get_pages([(plan.doc_id, p.page_no) for p in batch])
            if len(records) != len(batch):
                raise InputError(f"stored pages of {plan.path.name} are incomplete; delete and re-ingest it")
        # An upsert replaces the whole point, so every vector the page has is rebuilt here with the current
        # encoder: the image, and the caption when one is stored (re-embedding must not drop or stale it).
        dense: dict[int, dict[str, list[float]]] = {r.page.page_no: {} for r in records}
        with_image = [p for p in batch if p.image is not None]
        if encoder is not None and with_image:
            emb = encoder.encode_images([p.image for p in with_image])  # type: ignore[misc]
            for k, p in enumerate(with_image):
                dense[p.page_no]["image"] = emb[k].tolist()
        captioned = [r for r in records if r.page.caption]
        if encoder is not None and captioned:
            self.index.ensure_dense("caption", encoder.dim)
            cap = encoder.encode_texts([r.page.caption or "" for r in captioned])
            for k, r in enumerate(captioned):
                dense[r.page.page_no]["caption"] = cap[k].tolist()
        if encoder is not None and len(with_image) < len(batch):
            plan.embedded = False
        for p in batch:
            plan.warnings.extend(p.warnings)
            if p.words_failed:
                plan.words_failed.append(p.words_failed)
        sparse = {p.page_no: p.sparse for p in batch if p.sparse is not None}
        points = [PagePoint(id=point_id(plan.doc_id, r.page.page_no), doc_id=plan.doc_id, page=r.page.page_no,
                            collection=collection,
                            text=sparse.get(r.page.page_no)
                            or bm25.page_vector(r.table.texts, r.page.caption, r.page.headings),
                            dense=dense[r.page.page_no])
                  for r in records]
        self.index.upsert(points)
        if plan.mode == "full":
            self.catalog.put_pages(records)
        plan.pages += len(batch)

    def _done(self, plan: _Plan, collection: str, encoder: SiglipEncoder | None) -> FileOutcome:
        self.index.flush()  # vectors durable before the document is marked complete
        doc = self.catalog.get_document(plan.doc_id)
        stages = dict(doc.stages) if doc else {}
        stages.update({"words": self.words_version(), "index": bm25.VERSION, "ocr_words": SPLITTER_VERSION})
        if plan.mode == "full":
            stages.pop("caption", None)  # page rows were rewritten without captions
        pending = [p for p in (doc.pending if doc else []) if p == "caption" and plan.mode == "render"]
        if encoder is not None and plan.embedded:
            stages["embed"] = self.embed_version()
        else:
            stages.pop("embed", None)
            pending.append("embed")
        if plan.words_failed:  # never silently wordless: the words stage stays pending and the next run re-reads
            stages.pop("words", None)
            pending.append("words")
        self.catalog.complete_document(plan.doc_id, stages=stages, pending=pending, collection=collection)
        for w in plan.warnings[:5]:
            log.warning("%s: %s", plan.path.name, w)
        return FileOutcome(path=plan.name, doc_id=plan.doc_id, status="ingested", pages=plan.pages,
                           pending=pending, seconds=time.perf_counter() - plan.started,
                           warnings=plan.notes + plan.words_failed[:10])

    def _failed(self, plan: _Plan, code: str, message: str) -> FileOutcome:
        plan.failed = True
        if not plan.previously_complete:
            self.remove(plan.doc_id)
        return FileOutcome(path=plan.name, doc_id=plan.doc_id, status="failed",
                           seconds=time.perf_counter() - plan.started, error=ErrorInfo(code=code, message=message))
