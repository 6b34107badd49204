"""The page reader: PyMuPDF and OCR run in worker processes, so a file that crashes the parser, hangs or
exhausts memory costs only itself. Each worker has an address-space cap; each file a time limit. Pages stream
back over a pipe in small batches, so memory is bounded by the pages in flight, not by the document (a pipe
send blocks until the main process reads: natural back-pressure)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from schemas.documents import PageWordsSource
from schemas.errors import PageLensError, Timeout, WorkerCrashed
from schemas.wordtable import WordTable
from store.vectors import SparseVec

if TYPE_CHECKING:
    from ingest.write import Written

log = logging.getLogger(__name__)

Mode = Literal["full", "render"]
STARTUP_GRACE_S = 60.0  # a reader process may take this long to start (imports) before a file's clock runs
MIN_PART_PAGES = 64  # a file is split over several readers only in parts of at least this many pages


BIG_FILE_BYTES = 1 << 20  # a file this large may have enough pages to be shared by several readers
PARTS_PER_READER = 2  # a reader that finishes early takes the next part: no reader waits on a slow last half


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plan_parts(page_count: int, split: int) -> list[tuple[int, int]]:
    """The page ranges [start, stop) a file of ``page_count`` pages is read in when ``split`` readers may share
    it: up to PARTS_PER_READER consecutive parts per reader, each at least MIN_PART_PAGES pages (one part for a
    short file or a single reader)."""
    parts = 1 if split <= 1 else max(1, min(split * PARTS_PER_READER, page_count // MIN_PART_PAGES))
    size = -(-page_count // parts)
    return [(k * size, min(page_count, (k + 1) * size)) for k in range(parts) if k * size < page_count] or [(0, 0)]


@dataclass(frozen=True)
class ReadOptions:
    render_dpi: float
    ocr_dpi: float
    max_render_pixels: int
    ocr_min_words: int
    max_pages: int
    memory_mb: int
    batch_pages: int
    outline_headings: bool = True
    ocr_engine: str = "rapidocr"
    ocr_runtime: str = "auto"  # ingest.ocr.runtime_of
    ocr_threads: int = 0  # OCR inference threads per reader (0: the runtime's default)


@dataclass(frozen=True)
class ReadJob:
    """Read ``path``. ``mode="full"``: words (+OCR) and, if ``render``, encoder images; ``mode="render"``:
    encoder images only (words are already stored)."""

    job_id: int
    path: Path
    kind: Literal["pdf", "image"]
    password: str | None
    mode: Mode = "full"
    render: bool = True
    name: str = ""  # the file as the user named it, for messages (``path`` may be the stored copy)
    keep_decrypted: bool = False  # ``path`` is the stored copy: replace it by a decrypted one if it is encrypted
    split: int = 1  # readers that may share this file, over page ranges (``plan_parts``)
    pages: tuple[int, int] | None = None  # a part's page range [start, stop) (0-based); None: the whole file,
    #                                       or its first part once the file's length is known
    doc_id: str = ""  # the document its pages are written to (by Ray workers, with shared stores)

    @property
    def is_part(self) -> bool:
        """A later part of a file split over page ranges (its first part speaks for the file)."""
        return self.pages is not None and self.pages[0] > 0

    @property
    def label(self) -> str:
        return self.name or self.path.name


@dataclass
class PageOut:
    """One page as a reader sends it. In ``full`` mode the words go encoded (``blob``: what the catalog stores, a
    fraction of the pickled table) with the page's sparse vector computed here, so the main process — one core
    for every reader — only writes."""

    page_no: int
    width_pt: float
    height_pt: float
    rotation: int
    words_source: PageWordsSource
    words: WordTable | None  # in the reader; None once packed for the pipe
    headings: list[str] = field(default_factory=list)  # outline titles pointing here, larger-font lines
    blob: bytes = b""  # the words, encoded (WordTable.encode)
    word_count: int = 0
    sparse: SparseVec | None = None  # the BM25 vector of the words and headings (no caption yet)
    image: np.ndarray | None = None  # RGB uint8 (H, W, 3) at render_dpi, for the encoder
    image_vector: list[float] | None = None  # the image embedded already (by an encoder actor on Ray)
    warnings: list[str] = field(default_factory=list)
    words_failed: str | None = None  # why this page's words could not be read (OCR failed): retried next ingest


# What a pool of readers (local processes, or Ray tasks) tells the pipeline, one typed event at a time: each is
# about one file (or part of one), its ``job``.
@dataclass(frozen=True)
class _JobEvent:
    job: ReadJob


@dataclass(frozen=True)
class ReadStarted(_JobEvent):
    """A reader took the file (or part): its clock starts."""


@dataclass(frozen=True)
class ReadOpened(_JobEvent):
    """The file's length and the page ranges it is read in (only from a file's first part)."""

    page_count: int
    ranges: list[tuple[int, int]]


@dataclass(frozen=True)
class PagesRead(_JobEvent):
    """Pages read, for the pipeline to write."""

    pages: list[PageOut]


@dataclass(frozen=True)
class PagesWritten(_JobEvent):
    """Pages a Ray worker wrote into the shared stores itself: what it tells of them."""

    written: Written


@dataclass(frozen=True)
class ReadDone(_JobEvent):
    """The file (or this part of it) is read."""


@dataclass(frozen=True)
class ReadFailed(_JobEvent):
    """The file failed: its error code and what to do."""

    code: str
    message: str

    @classmethod
    def of(cls, job: ReadJob, err: PageLensError) -> ReadFailed:
        return cls(job, err.code, err.message)


ReadEvent = ReadStarted | ReadOpened | PagesRead | PagesWritten | ReadDone | ReadFailed


def read_event(job: ReadJob, kind: str, payload: Any = None) -> ReadEvent:
    """A reader's message (``kind``, ``payload``: what crosses the pipe from a reader process or comes back from
    a Ray task) as its typed event."""
    if kind == "started":
        return ReadStarted(job)
    if kind == "opened":
        count, ranges = payload
        return ReadOpened(job, count, ranges)
    if kind == "pages":
        return PagesRead(job, payload)
    if kind == "written":
        return PagesWritten(job, payload)
    if kind == "done":
        return ReadDone(job)
    if kind == "failed":
        return ReadFailed(job, *payload)
    raise ValueError(f"unknown reader message {kind!r}")


# ---------------------------------------------------------------------------------------------------
# worker side


def _limit_memory(mb: int) -> None:
    """Cap the reader's private writable memory (RLIMIT_DATA: heap, anonymous mappings — what a decompression
    bomb or an enormous image fills) at ``mb``.

    Not the address space (RLIMIT_AS): onnxruntime and glibc reserve gigabytes of address space they never touch
    (per-thread malloc arenas, PROT_NONE reservations), so an address-space cap made OCR fail with
    ``std::bad_alloc`` on ordinary pages while memory in use was a third of the cap. Fewer malloc arenas keep
    the reservations and fragmentation small as well."""
    import contextlib
    import ctypes
    import resource

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX = 2 (glibc; harmless elsewhere)
    cap = mb * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard if hard != resource.RLIM_INFINITY and hard < cap
                                              else resource.RLIM_INFINITY))


def _read_page(doc: Any, i: int, job: ReadJob, opts: ReadOptions, outline: dict[int, list[str]]) -> PageOut:
    from ingest import pdf

    page = doc[i]
    w, h, rot = pdf.page_geometry(page)
    out = PageOut(page_no=i + 1, width_pt=w, height_pt=h, rotation=rot, words_source="none", words=None)
    if i == 0 and job.mode == "full" and (damage := pdf.damage_of(doc, job.path, job.kind)):
        out.warnings.append(damage)  # said once, with the file's first page
    if job.mode == "full":
        words = WordTable.empty()
        textpage = None
        try:
            textpage = pdf.text_page(page)  # parsed once for the words and the headings
            words = pdf.text_words(page, textpage)
            out.words_source = "text_layer" if words else "none"
        except Exception as e:  # a broken content stream costs this page's words only
            out.warnings.append(f"page {i + 1}: text layer unreadable ({e})")
        if words:
            try:
                found = pdf.font_headings(page, textpage)
            except Exception:  # headings are a ranking hint; a page that cannot give them still has its words
                found = []
            out.headings = list(dict.fromkeys([*outline.get(i + 1, []), *found]))
        else:
            out.headings = list(outline.get(i + 1, []))
        if len(words) < opts.ocr_min_words and (job.kind == "image" or page.get_images(full=False)):
            try:
                from ingest.ocr import ocr_words, runtime_for

                ocr = ocr_words(pdf.render(page, opts.ocr_dpi, opts.max_render_pixels), opts.ocr_engine,
                                opts.ocr_threads, runtime_for(opts.ocr_runtime, opts.memory_mb))
                if len(ocr) > len(words):
                    words, out.words_source = ocr, "ocr"
            except Exception as e:  # recorded on the page: the words stage stays pending and is retried
                out.words_failed = f"page {i + 1}: OCR failed ({e.__class__.__name__}: {str(e)[:200]})"
                out.warnings.append(out.words_failed)
        _pack(out, words)
    if job.render:
        try:
            out.image = pdf.render(page, opts.render_dpi, opts.max_render_pixels)
        except Exception as e:
            out.warnings.append(f"page {i + 1}: cannot be rendered ({e})")
    return out


def _pack(out: PageOut, words: WordTable) -> None:
    """The page's words as the catalog stores them, and its BM25 vector: computed here, in parallel readers."""
    from store import bm25

    out.blob = words.encode()
    out.word_count = len(words)
    out.sparse = bm25.page_vector(words.texts, None, out.headings)


def _finish(conn: Connection, job: ReadJob, kind: Literal["done", "failed"], payload: Any = None) -> None:
    """A job's last message, preceded by this reader's own peak resident memory so far (MB) for the pool."""
    import resource

    conn.send(("peak", job.job_id, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    conn.send((kind, job.job_id, payload))


def _open(job: ReadJob, opts: ReadOptions) -> Any:
    """``job``'s file, opened as every reader opens it (raises what opening raises)."""
    from ingest import pdf

    return pdf.open_document(job.path, job.kind, job.password, opts.max_pages, name=job.label)


def _outline(doc: Any, job: ReadJob, opts: ReadOptions) -> dict[int, list[str]]:
    """The outline titles by page that ``job`` reads as headings (none when it only renders)."""
    from ingest import pdf

    return pdf.outline_by_page(doc) if opts.outline_headings and job.kind == "pdf" and job.mode == "full" else {}


def _run_job(conn: Connection, job: ReadJob, opts: ReadOptions) -> None:
    conn.send(("started", job.job_id, None))  # the file's time limit starts now, not at process start-up
    try:
        doc = _open(job, opts)
    except PageLensError as e:
        _finish(conn, job, "failed", (e.code, e.message))
        return
    try:
        if job.keep_decrypted and doc.needs_pass:  # opened with the password: keep the copy pages render from
            _store_decrypted(doc, job.path)
        if job.pages is None:  # the file's first (or only) part: it decides the split
            parts = plan_parts(doc.page_count, job.split)
            start, stop = parts[0]
            conn.send(("opened", job.job_id, (doc.page_count, parts)))
        else:
            start, stop = job.pages
            if doc.page_count < stop:  # the file changed under us (the stored copy is immutable: not expected)
                raise ValueError(f"has {doc.page_count} pages, fewer than this part's range {job.pages}")
        outline = _outline(doc, job, opts)
        batch: list[PageOut] = []
        for i in range(start, stop):
            batch.append(_read_page(doc, i, job, opts, outline))
            if len(batch) >= opts.batch_pages:
                conn.send(("pages", job.job_id, batch))
                batch = []
        if batch:
            conn.send(("pages", job.job_id, batch))
        _finish(conn, job, "done")
    finally:
        doc.close()


def _store_decrypted(doc: Any, path: Path) -> None:
    """Replace the stored copy ``path`` of an authenticated encrypted PDF by a decrypted one (atomically)."""
    import os

    from store.mupdf import pymupdf

    tmp = path.with_name(f".incoming-{path.name}.decrypted")
    try:
        doc.save(str(tmp), encryption=pymupdf.PDF_ENCRYPT_NONE)  # type: ignore[attr-defined]
        with tmp.open("rb") as f:
            os.fsync(f.fileno())  # durable before it replaces the stored copy
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def worker_main(conn: Connection, opts: ReadOptions) -> None:
    """Entry point of a reader process: read jobs from ``conn`` until it sends ``None``. Ends quietly when the
    main process has gone (closed pipe, Ctrl-C): no traceback on the user's terminal."""
    try:
        _serve(conn, opts)
    except (BrokenPipeError, ConnectionResetError, EOFError, KeyboardInterrupt):
        return


def _serve(conn: Connection, opts: ReadOptions) -> None:
    _limit_memory(opts.memory_mb)
    from ingest import pdf  # noqa: F401  (import PyMuPDF before the first job's clock starts)

    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            _run_job(conn, job, opts)
        except Exception as e:
            _finish(conn, job, "failed", failure(job, opts, e))


def failure(job: ReadJob, opts: ReadOptions, e: BaseException) -> tuple[str, str]:
    """(code, message) for an error reading ``job``: the same codes wherever the reading ran (here, on Ray)."""
    if isinstance(e, PageLensError):
        return e.code, e.message
    if isinstance(e, MemoryError):
        return "too_large", (f"{job.label} needs more memory than the reader's cap of {opts.memory_mb} MB (a "
                             "decompression bomb or enormous image?); raise PAGELENS_INGEST__WORKER_MEMORY_MB")
    why = str(e).replace(str(job.path), job.label)  # the user's name, not the stored copy's
    return ("invalid_pdf" if job.kind == "pdf" else "invalid_image"), f"{job.label} cannot be read: {why}"


def timed_out(job: ReadJob, timeout_s: float) -> Timeout:
    """The error of a file whose reading ran past the per-file time limit (local readers and Ray tasks alike)."""
    return Timeout(f"{job.label} took over {timeout_s:.0f} s to read and was stopped; it may be malformed, or raise "
                   "PAGELENS_INGEST__FILE_TIMEOUT_S")


def read_range(job: ReadJob, opts: ReadOptions, start: int, stop: int) -> list[PageOut]:
    """Pages [start, stop) of ``job``'s file, read as a local reader reads them (for readers elsewhere: Ray).
    Raises what reading raises; ``failure`` names it."""
    doc = _open(job, opts)
    try:
        outline = _outline(doc, job, opts)
        return [_read_page(doc, i, job, opts, outline) for i in range(start, min(stop, doc.page_count))]
    finally:
        doc.close()


def page_count(job: ReadJob, opts: ReadOptions) -> int:
    """How many pages ``job``'s file has (opening it as a reader does; raises what opening raises)."""
    doc = _open(job, opts)
    try:
        if job.keep_decrypted and doc.needs_pass:  # opened with the password: keep the copy pages render from
            _store_decrypted(doc, job.path)
        return int(doc.page_count)
    finally:
        doc.close()


# ---------------------------------------------------------------------------------------------------
# main side


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    job: ReadJob | None = None
    started: float = 0.0
    busy_at_start: float = 0.0


class ReaderPool:
    """Runs ReadJobs on ``workers`` processes and yields their events in arrival order.

    The per-file time limit counts the time a file's worker spends, not the time the caller spends handling
    its pages (the caller reports that through ``add_busy``)."""

    def __init__(self, opts: ReadOptions, workers: int, timeout_s: float) -> None:
        self.opts = opts
        self.n = max(1, workers)
        self.timeout_s = timeout_s
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._busy = 0.0
        self._queue: list[ReadJob] = []  # jobs not yet given to a reader, next one last
        self.peak_rss_mb = 0.0  # the largest resident memory any reader reported (readers that died say nothing)

    def add_busy(self, seconds: float) -> None:
        self._busy += seconds

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main, args=(child, self.opts), daemon=True,
                                 name="pagelens-reader")
        proc.start()
        child.close()
        return _Worker(proc=proc, conn=parent)

    def _kill(self, w: _Worker) -> None:
        w.proc.kill()
        w.proc.join(5)
        w.conn.close()
        self._workers.remove(w)

    def run(self, jobs: Sequence[ReadJob]) -> Generator[ReadEvent, None, None]:
        """Yield the jobs' events. A job whose file turns out long (``opened`` with several page ranges) has its
        later parts queued next, for the readers that are free: one long file uses every reader."""
        self._queue = queue = list(reversed(jobs))
        # start the readers now (imports take a moment): one per file, and all of them when a file may be long
        # enough to be shared (its later parts then find them ready)
        big = any(j.split > 1 and _size(j.path) > BIG_FILE_BYTES for j in jobs)
        for _ in range(min(self.n, self.n if big else len(jobs)) - len(self._workers)):
            self._new()
        try:
            while queue or any(w.job for w in self._workers):
                while queue and len([w for w in self._workers if w.job]) < self.n:
                    w = next((w for w in self._workers if w.job is None), None) or self._new()
                    w.job = queue.pop()
                    # until the worker acknowledges the job, only a start-up grace period runs
                    w.started, w.busy_at_start = time.monotonic() + STARTUP_GRACE_S, self._busy
                    try:
                        w.conn.send(w.job)
                    except OSError:  # an idle reader was killed from outside (OOM killer, a user): use a new one
                        queue.append(w.job)
                        w.job = None
                        self._kill(w)
                yield from self._poll()
        finally:
            self.close()

    def _new(self) -> _Worker:
        w = self._spawn()
        self._workers.append(w)
        return w

    def _poll(self) -> Iterator[ReadEvent]:
        active = [w for w in self._workers if w.job]
        ready = wait([w.conn for w in active] + [w.proc.sentinel for w in active], timeout=0.5)
        now = time.monotonic()
        for w in active:
            job = w.job
            if job is None or w not in self._workers:  # cancelled while an earlier event was being handled
                continue
            if w.conn in ready:
                try:
                    kind, _jid, payload = w.conn.recv()
                except (EOFError, OSError):
                    kind, payload = "crashed", None
                if kind == "started":
                    w.started, w.busy_at_start = time.monotonic(), self._busy
                    yield ReadStarted(job)
                    continue
                if kind == "peak":
                    self.peak_rss_mb = max(self.peak_rss_mb, float(payload))
                    continue
                if kind in ("done", "failed"):
                    w.job = None
                if kind == "opened" and job.pages is None:
                    _count, parts = payload
                    self._queue += [replace(job, pages=r, keep_decrypted=False) for r in reversed(parts[1:])]
                if kind != "crashed":
                    yield read_event(job, kind, payload)
                    continue
            if not w.proc.is_alive() or (w.proc.sentinel in ready and w.conn not in ready):
                code = w.proc.exitcode
                self._kill(w)
                err: PageLensError = WorkerCrashed(
                    f"{job.label} crashed the PDF reader (exit code {code}); the file is probably malformed — "
                    "re-export or repair it (e.g. qpdf) and retry")
                yield ReadFailed.of(job, err)
                continue
            spent = (now - w.started) - (self._busy - w.busy_at_start)
            if spent > self.timeout_s:
                self._kill(w)
                err = timed_out(job, self.timeout_s)
                yield ReadFailed.of(job, err)

    def cancel(self, job: ReadJob) -> None:
        """Stop reading ``job``'s file, every part of it (their workers are killed, their queued parts dropped; no
        more events come for it)."""
        self._queue[:] = [j for j in self._queue if j.job_id != job.job_id]
        for w in list(self._workers):
            if w.job is not None and w.job.job_id == job.job_id:
                self._kill(w)

    def close(self) -> None:
        """Stop every reader: idle ones are told to exit (all at once, then awaited), busy ones are killed."""
        for w in self._workers:
            try:
                if w.job is None:
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 2
        for w in self._workers:
            if w.job is None:
                w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)
            w.conn.close()
        self._workers.clear()
