"""The ingest run: plan each file (``ingest.plan``), read what is needed in the reader workers (``ingest.reader``),
write vectors and catalog rows as pages arrive — vectors first, the document marked complete last, so a killed
run leaves only ``partial`` documents, which the next run cleans up or redoes (``store.library``) — then caption
the run's documents (``ingest.captions``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ingest import pdf
from ingest.captions import Captioner, CaptionWindow
from ingest.ocr import ocr_threads, ocr_version
from ingest.patch_stage import PatchEmbedder
from ingest.plan import Plan, embed_version, plan_file, words_version
from ingest.reader import (
    PageOut,
    PagesRead,
    PagesWritten,
    ReadDone,
    ReaderPool,
    ReadFailed,
    ReadJob,
    ReadOpened,
    ReadOptions,
    ReadStarted,
)
from ingest.text_stage import TextEmbedder
from ingest.write import SharedStores, Written, page_records, write_pages, written
from store.space import check_free, disk_full_from

if TYPE_CHECKING:
    from ingest.ray_readers import RayReaderPool
from schemas.errors import DiskFull, InputError, PageLensError, StoreError
from schemas.results import ErrorInfo, FileOutcome, IngestReport
from schemas.settings import Settings
from store import bm25
from store.catalog import Catalog, PageRecord
from store.files import FileStore
from store.library import Library
from store.vectors import VectorIndex
from vlm.runtime import Models
from vlm.siglip import SiglipEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Reported after each file event and page batch. ``pages_total`` counts pages of files opened so far (it grows
    as files are opened); ``work_done`` does not: files finished plus the share read of those being read, out of
    ``files_total`` (what a bar can show). ``current``: the file being read when only one is, else the number of
    files being read."""

    files_total: int
    files_done: int
    pages_done: int
    pages_total: int
    current: str
    notice: str | None = None
    work_done: float | None = None
    stage: str | None = None  # a stage after the read (e.g. "embedding words"), counting its own pages
    stage_done: int = 0
    stage_total: int = 0


ProgressFn = Callable[[Progress], None]


class Ingestor:
    """Ingests files into the catalog, file store and vector index. Build once per process (see app.service)."""

    def __init__(self, settings: Settings, catalog: Catalog, files: FileStore, index: VectorIndex,
                 models: Models) -> None:
        self.s = settings
        self.library = Library(catalog, files, index)
        self.catalog = catalog
        self.files = files
        self.index = index
        self.models = models
        self.captioner = Captioner(settings, self.library, models)
        self._window: CaptionWindow | None = None  # the run's caption window, while its files are read
        self.text_embedder = TextEmbedder(settings, self.library, models)
        self.patch_embedder = PatchEmbedder(settings, self.library, models)
        self._names: dict[Path, str] = {}

    def encoder(self) -> SiglipEncoder | None:
        """The SigLIP encoder, loaded on first need; None (``encoder_error`` says why) when it cannot load."""
        encoder = self.models.maybe(self.models.image_encoder)
        if encoder is not None:
            self.index.ensure_dense("image", encoder.dim)
        return encoder

    @property
    def encoder_error(self) -> str | None:
        return self.models.why_not("image_encoder")

    # -- the stored library ---------------------------------------------------------------------
    def reconcile(self, keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """Remove what a killed run left behind (``Library.reconcile``)."""
        return self.library.reconcile(keep)

    def remove(self, doc_id: str) -> None:
        """Delete a document everywhere (``Library.remove``)."""
        self.library.remove(doc_id)

    # -- run --------------------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path], *, collection: str | None = None, password: str | None = None,
               on_progress: ProgressFn | None = None, workers: int = 1,
               names: dict[Path, str] | None = None, ray: str | None = None) -> IngestReport:
        """Ingest ``paths`` (files). Never raises for a bad file: each gets its FileOutcome. When a store fails
        mid-run (the catalog database is gone), the run stops: finished files keep their outcome, the rest are
        reported failed with the store's error, and the next run reconciles what was half-written.

        ``names``: how the user knows a file when that is not its path (an upload is saved under a server folder
        but catalogued and reported under the client's file name). ``ray``: read on the Ray cluster at this
        address (``local``, ``auto``, ``ray://host:10001``) instead of local reader processes; everything else
        runs here, the same way."""
        t0 = time.perf_counter()
        outcomes: dict[Path, FileOutcome] = {}
        self._names = names or {}
        try:
            return self._run(paths, outcomes, collection, password, on_progress, workers, t0, ray)
        except StoreError as e:
            log.error("ingest stopped: %s", e.message)
            err = ErrorInfo(code=e.code, message=f"not ingested: {e.message}")
            files = [outcomes.get(p) or FileOutcome(path=self._name(p), doc_id=None, status="failed", error=err)
                     for p in paths]
            return IngestReport(files=files, seconds=time.perf_counter() - t0)

    def _name(self, path: Path) -> str:
        return self._names.get(path, str(path))

    def _run(self, paths: Sequence[Path], outcomes: dict[Path, FileOutcome], collection: str | None,
             password: str | None, on_progress: ProgressFn | None, workers: int, t0: float,
             ray: str | None = None) -> IngestReport:
        coll = collection or self.s.default_collection
        plans: list[Plan] = []
        aliases: list[tuple[str, Path]] = []
        pages_done = pages_total = 0

        def report(current: str, notice: str | None = None, stage: tuple[str, int, int] | None = None) -> None:
            if on_progress and stage is not None:
                on_progress(Progress(len(paths), len(outcomes), pages_done, pages_total, current, notice,
                                     work_done=float(len(outcomes)), stage=stage[0], stage_done=stage[1],
                                     stage_total=stage[2]))
            elif on_progress:
                reading = [p for p in plans if p.page_count and p.path not in outcomes and not p.failed]
                if len(reading) == 1:
                    current = reading[0].path.name
                elif reading:
                    current = f"{len(reading)} files"
                share = sum(min(1.0, p.pages / p.page_count) for p in reading)
                on_progress(Progress(len(paths), len(outcomes), pages_done, pages_total, current, notice,
                                     work_done=min(float(len(paths)), len(outcomes) + share)))

        for path in paths:
            try:
                plan = plan_file(self.s, self.library, path, self._name(path), coll)
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
        for plan in list(plans):
            if plan.mode == "full":
                try:  # the source copy first; a disk that cannot take it fails this file alone
                    check_free(self.s.data_dir, self.s.ingest.min_free_mb, plan.path.stat().st_size)
                    self.files.put(plan.doc_id, plan.path)
                except OSError as e:
                    full = disk_full_from(e, self.s.data_dir)
                    if full is None:
                        raise
                    outcomes[plan.path] = self._failed(plan, full.code, full.message)
                    plans.remove(plan)
                except DiskFull as e:
                    outcomes[plan.path] = self._failed(plan, e.code, e.message)
                    plans.remove(plan)
        # read the stored copy (what the catalog describes); the original when an older run did not keep one
        # an encrypted PDF opened with the password is stored decrypted, so its pages render later without it
        # (encryption at rest is the storage's job: see README "Encrypted PDFs")
        jobs = [ReadJob(job_id=n, path=self.files.path_of(p.doc_id) if self.files.has(p.doc_id) else p.path,
                        kind=p.kind, password=password, mode=p.mode, render=encoder is not None, name=p.path.name,
                        keep_decrypted=p.mode == "full" and self.files.has(p.doc_id), split=workers,
                        doc_id=p.doc_id)
                for n, p in enumerate(plans)]

        i = self.s.ingest
        opts = ReadOptions(render_dpi=i.render_dpi, ocr_dpi=i.ocr_dpi, max_render_pixels=i.max_render_pixels,
                           ocr_min_words=i.ocr_min_words, max_pages=i.max_pages, memory_mb=i.worker_memory_mb,
                           batch_pages=i.batch_pages, outline_headings=i.outline_headings, ocr_engine=i.ocr_engine,
                           ocr_runtime=i.ocr_runtime,
                           ocr_threads=i.ocr_threads or (1 if ray else ocr_threads(workers)))  # a Ray task: 1 CPU
        pool: ReaderPool | RayReaderPool
        encoders = None
        if ray:  # the vector stages' models on the cluster too (joined only if a stage has pages to embed)
            from ingest.ray_vectors import RayEncoders

            encoders = RayEncoders(ray)
        ray = ray if plans else None  # nothing to read (every file unchanged): no cluster is started for it
        shared = SharedStores.of(self.s, coll) if ray else None  # Ray workers write their pages themselves
        if ray:
            from ingest.ray_readers import RayReaderPool

            pool = RayReaderPool(opts, ray, timeout_s=i.file_timeout_s,
                                 encoder=self.s.encoder if encoder is not None else None, writers=shared)
        else:
            pool = ReaderPool(opts, workers=workers, timeout_s=i.file_timeout_s)
        # captions from the first page read: each batch goes into the window as it is written (a file's stored copy
        # renders at once; not on Ray, where workers write the pages, nor for encrypted files, stored decrypted
        # only once read); what the window does not take is captioned after the read (``Captioner.run``)
        # the captioned pages' text is embedded as each batch of captions is stored, while later requests are in
        # flight (the text stage's pass after the window then has nothing left for those documents)
        streamed = self.text_embedder.streaming({p.doc_id for p in plans},
                                                lambda n: report(plans[0].name, notice=n), lambda: pages_total)
        window = self.captioner.window(streamed) if (self.captioner.wanted() and not ray and password is None
                                                     and any(p.mode == "full" for p in plans)) else None
        self._window = window
        if window is not None:
            report(plans[0].name, notice=f"captioning pages as they are read, {self.s.vlm.concurrency} requests "
                                         "at a time")
        caption_failures: dict[str, str] = {}
        events = pool.run(jobs)
        try:
            for ev in events:
                plan = plans[ev.job.job_id]
                if plan.failed:  # another part of this file failed: what its other parts still send is dropped
                    continue
                t_busy = time.perf_counter()
                try:
                    match ev:
                        case ReadStarted() if not ev.job.is_part:  # the file's own time, not its wait for a reader
                            plan.started = time.perf_counter()
                        case ReadOpened():  # from the file's first part: its length and the ranges it is read in
                            plan.page_count = ev.page_count
                            plan.parts_left = len(ev.ranges)
                            pages_total += plan.page_count
                            self._opened(plan, coll)
                        case PagesRead():
                            records = self._pages(plan, ev.pages, coll, encoder)
                            pages_done += len(ev.pages)
                            if window is not None and plan.mode == "full":
                                window.add(plan.doc_id, coll, self.files.path_of(plan.doc_id), records)
                        case PagesWritten():  # by a worker, into the shared stores
                            self._written(plan, ev.written, encoder)
                            pages_done += ev.written.pages
                        case ReadDone():
                            plan.parts_left -= 1
                            if plan.parts_left == 0:
                                outcomes[plan.path] = self._done(plan, coll, encoder)
                                if window is not None and plan.mode == "full":
                                    window.complete(plan.doc_id)
                        case ReadFailed():
                            outcomes[plan.path] = self._failed(plan, ev.code, ev.message)
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
        except BaseException:
            if window is not None:
                window.abort()
                window = None
            raise
        finally:
            events.close()  # the pool stops its readers (on an error too, before what follows)
            if window is not None:
                caption_failures = window.close()
            self._window = None
            if shared is not None:  # a worker killed between its points and its rows may have left points of
                for plan in plans:  # a failed file: every worker has stopped now, so remove such files once more
                    if plan.failed and not plan.previously_complete:
                        try:
                            self.remove(plan.doc_id)
                        except PageLensError as e:  # the stores are gone: the next run's reconcile removes it
                            log.warning("could not remove the failed %s yet: %s", plan.name, e.message)
        if self.captioner.wanted():
            self.captioner.run(outcomes, report, caption_failures)
        self.text_embedder.run(outcomes, report, encoders)  # after the captions: part of the text it embeds
        self.patch_embedder.run(outcomes, report, encoders)
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

    # -- event handlers ---------------------------------------------------------------------------
    def _opened(self, plan: Plan, collection: str) -> None:
        if plan.mode == "full":
            self.catalog.begin_document(doc_id=plan.doc_id, name=plan.name, kind=plan.kind,
                                        collection=collection, size_bytes=plan.path.stat().st_size,
                                        page_count=plan.page_count)

    def _pages(self, plan: Plan, batch: list[PageOut], collection: str,
               encoder: SiglipEncoder | None) -> list[PageRecord]:
        check_free(self.s.data_dir, self.s.ingest.min_free_mb)  # before every write: a full disk must not crash us
        if plan.mode == "full":
            records = page_records(plan.doc_id, batch)
        else:
            records = self.catalog.get_pages([(plan.doc_id, p.page_no) for p in batch])
            if len(records) != len(batch):
                raise InputError(f"stored pages of {plan.path.name} are incomplete; delete and re-ingest it")
        # An upsert replaces the whole point, so every vector the page has is rebuilt here with the current
        # encoder: the image, and the caption when one is stored (re-embedding must not drop or stale it).
        dense: dict[int, dict[str, list[float]]] = {r.page.page_no: {} for r in records}
        for p in batch:  # embedded where they were read (the Ray cluster's encoder actors)
            if p.image_vector is not None:
                dense[p.page_no]["image"] = p.image_vector
        with_image = [p for p in batch if p.image is not None and p.image_vector is None]
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
        write_pages(self.index, self.catalog, records, collection, dense,
                    {p.page_no: p.sparse for p in batch if p.sparse is not None}, rows=plan.mode == "full",
                    replace=plan.mode == "full")
        self._written(plan, written(batch, dense), encoder)
        return records

    @staticmethod
    def _written(plan: Plan, w: Written, encoder: SiglipEncoder | None) -> None:
        """Account for pages written (here, or by a worker on the cluster)."""
        if encoder is not None and w.embedded < w.pages:
            plan.embedded = False
        plan.warnings.extend(w.warnings)
        plan.notes.extend(x[len(pdf.DAMAGED):] for x in w.warnings
                          if x.startswith(pdf.DAMAGED) and x[len(pdf.DAMAGED):] not in plan.notes)
        plan.words_failed.extend(w.words_failed)
        plan.pages += w.pages

    def _done(self, plan: Plan, collection: str, encoder: SiglipEncoder | None) -> FileOutcome:
        self.index.flush()  # vectors durable before the document is marked complete
        doc = self.catalog.get_document(plan.doc_id)
        stages = dict(doc.stages) if doc else {}
        stages.update({"words": words_version(self.s), "index": bm25.VERSION,
                       "ocr_words": ocr_version(self.s.ingest.ocr_engine)})
        if plan.mode == "full":
            stages.pop("caption", None)  # page rows were rewritten without captions
            stages.pop("text", None)  # and the points without their words' vectors
        pending = [p for p in (doc.pending if doc else []) if p == "caption" and plan.mode == "render"]
        if encoder is not None and plan.embedded:
            stages["embed"] = embed_version(self.s)
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

    def _failed(self, plan: Plan, code: str, message: str) -> FileOutcome:
        plan.failed = True
        if self._window is not None:  # what is in flight for its pages is dropped, not stored after the removal
            self._window.forget(plan.doc_id)
        if not plan.previously_complete:
            self.remove(plan.doc_id)
        return FileOutcome(path=plan.name, doc_id=plan.doc_id, status="failed",
                           seconds=time.perf_counter() - plan.started, error=ErrorInfo(code=code, message=message))
