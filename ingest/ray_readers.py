"""Reading on a Ray cluster (``pagelens ingest --ray ADDRESS``): the same ReadJobs in, the same events out as
``ReaderPool``, so planning and crash safety stay in the pipeline on the driver, decided in one place.

Each file is opened by one task (its page count; an encrypted stored copy is replaced by its decrypted one there),
then read as tasks over page ranges of ``RAY_PART_PAGES`` pages (``RAY_RENDER_PART_PAGES`` when pages are rendered
for the encoder), spread over the cluster. Every task runs the local readers' code (``ingest.reader.read_range``)
and its errors get the local readers' codes (``failure``). A task whose worker dies (killed, out of memory) is
retried by Ray (``max_retries``), and the file is recorded failed with ``worker_crashed`` only when the retries are
spent. Limits, per task: the memory cap is set in the task's worker process (``RLIMIT_DATA``, as for a local
reader); the time limit runs inside the task (a timer that raises) and, for a task stuck in native code, on the
driver (cancelled with its worker after three times the limit).

With an encoder, reading and embedding run as one Ray Data pipeline once the files are opened
(``ingest.ray_data``): read tasks → an actor pool holding SigLIP (``map_batches``; GPU actors when the cluster has
GPUs) → the driver, which receives vectors, never images.

With shared stores (a Qdrant server and PostgreSQL: ``ingest.write.SharedStores``) the workers write the pages they
read themselves — read tasks, or a pool of writer actors after the encoder — and the driver gets ``written``
summaries; it still begins and completes every document, so crash safety is the local one.

Ray is an optional extra (``pip install 'pagelens[ray]'``): only ``ingest/ray_*.py`` import it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ingest.reader import (
    PagesRead,
    PagesWritten,
    ReadDone,
    ReadEvent,
    ReadFailed,
    ReadJob,
    ReadOpened,
    ReadOptions,
    ReadStarted,
    timed_out,
)
from ingest.write import SharedStores
from schemas.errors import ConfigError, StoreError, WorkerCrashed

log = logging.getLogger(__name__)

RAY_PART_PAGES = 128  # pages per read task: results stay small in the object store, work spreads over the cluster
RAY_RENDER_PART_PAGES = 32  # with page images (for the encoder): a local reader's batch, so a task's memory is too
MAX_RETRIES = 3  # a task whose worker died is run again this many times
HARD_STOP = 3.0  # the driver cancels a task still running after this many times the per-file time limit


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:10001``), or start a local one for ``local``;
    nothing to do when this process is already connected. Raises ConfigError saying what to do."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--ray needs Ray: pip install 'pagelens[ray]'") from e
    if ray.is_initialized():
        return
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ConfigError(f"cannot join the Ray cluster at {address!r} ({e}); start one (`ray start --head`) or "
                          "give --ray local for a local instance") from e


def actor_shape(actors: int | None = None) -> tuple[int, int, int]:
    """(GPUs, actors, CPUs per actor) of a model's actor pool on the connected cluster: one actor per GPU; on a
    CPU-only cluster actors of up to 4 CPUs (torch threads) each, as many as fit beside one reading CPU (Ray Data
    scales the pool from one): each holds a copy of the model. ``actors`` overrides the count."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    actor_cpus = 1 if gpus else min(4, max(1, cpus - 1))
    return gpus, actors or (gpus or max(1, (cpus - 1) // actor_cpus)), actor_cpus


class _TimeUp(BaseException):
    """Raised by a task's timer. A BaseException, so that the readers' per-page ``except Exception`` (a broken
    content stream costs only that page) cannot swallow it and store the page without its words."""


def _limits(opts: ReadOptions, timeout_s: float) -> Any:
    """Inside a task: the reader's memory cap, and a timer raising _TimeUp after ``timeout_s`` (returned: cancel
    it with ``signal.setitimer(signal.ITIMER_REAL, 0)``)."""
    import signal

    from ingest.reader import _limit_memory

    _limit_memory(opts.memory_mb)

    def time_up(_sig: int, _frame: Any) -> None:
        raise _TimeUp

    signal.signal(signal.SIGALRM, time_up)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    return signal


def _within_limits(kind: str, read: Callable[[], Any], job: ReadJob, opts: ReadOptions,
                   timeout_s: float) -> tuple[str, Any]:
    """(``kind``, what ``read`` returns) or ("failed", (code, message)), under the reader's limits. The timer may
    fire anywhere — in the read, in its error's handler, as the limits are set or cleared — and always ends as
    ``timeout``: a _TimeUp escaping the task (a BaseException) would end the Ray worker itself, and the file would
    be reported ``worker_crashed`` after every retry met the same limit."""
    import signal

    from ingest.reader import failure

    try:
        try:
            _limits(opts, timeout_s)
            return kind, read()
        except _TimeUp:
            return "failed", _timeout(job, timeout_s)
        except Exception as e:
            return "failed", failure(job, opts, e)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _TimeUp:  # fired in a handler above, or before the timer was cleared
        signal.setitimer(signal.ITIMER_REAL, 0)
        return "failed", _timeout(job, timeout_s)


def _open_task(job: ReadJob, opts: ReadOptions, timeout_s: float) -> tuple[str, Any]:
    """("opened", page count) or ("failed", (code, message))."""
    from ingest.reader import page_count

    return _within_limits("opened", lambda: page_count(job, opts), job, opts, timeout_s)


def _read_task(job: ReadJob, opts: ReadOptions, start: int, stop: int, timeout_s: float,
               writers: SharedStores | None = None) -> tuple[str, Any]:
    """("pages", list[PageOut]), ("written", Written) when this worker wrote them into the shared stores itself,
    or ("failed", (code, message))."""
    from ingest.reader import read_range

    kind, payload = _within_limits("pages", lambda: read_range(job, opts, start, stop), job, opts, timeout_s)
    if kind == "pages" and writers is not None and job.mode == "full":
        return write_here(writers, job, payload)
    return kind, payload


def write_here(writers: SharedStores, job: ReadJob, pages: list[Any]) -> tuple[str, Any]:
    """In a worker: write ``pages`` of ``job`` into the shared stores → ("written", Written) or ("failed", ...)."""
    try:
        return "written", writers.write(job.doc_id, pages)
    except Exception as e:  # the stores refused or are unreachable from this worker: the file fails, not the run
        err = StoreError(f"a Ray worker could not write the pages of {job.label} ({e.__class__.__name__}: "
                         f"{str(e)[:300]}); check that every node reaches PAGELENS_QDRANT_URL and "
                         "PAGELENS_DATABASE_URL")
        return "failed", (err.code, err.message)


def _timeout(job: ReadJob, timeout_s: float) -> tuple[str, str]:
    err = timed_out(job, timeout_s)
    return err.code, err.message


@dataclass
class _Task:
    job: ReadJob
    kind: str  # "open" or "read"
    submitted: float


class RayReaderPool:
    """``ReaderPool``'s interface over Ray tasks (see the module's docstring)."""

    def __init__(self, opts: ReadOptions, address: str, timeout_s: float, encoder: Any = None,
                 embed_actors: int | None = None, writers: SharedStores | None = None) -> None:
        """``encoder``: EncoderSettings to embed the pages on the cluster with (None: the pages come back with their
        images, if rendered, for the caller to embed); ``embed_actors``: how many encoder actors (default: one per
        GPU in the cluster; without GPUs, 4-CPU actors beside one reading CPU); ``writers``: the shared stores
        the workers write freshly read pages into themselves (events ``written`` instead of ``pages``; None: every
        page comes back to the caller)."""
        connect(address)
        import ray

        self._ray = ray
        self.opts = opts
        self.timeout_s = timeout_s
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)
        self._open = remote(_open_task)
        self._read = remote(_read_task)
        self.encoder = encoder
        self.writers = writers
        self._stopped: list[Any] = []  # force-cancelled tasks: waited for at close, so no write outlives the run
        self._gpus, self._embed_actors, self._actor_cpus = actor_shape(embed_actors)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._to_embed: list[tuple[ReadJob, int, int]] = []  # ranges for the Ray Data pipeline (read + embed)
        self._tasks: dict[Any, _Task] = {}
        # tasks are submitted only while fewer than two per CPU are out, so a task's clock starts about when it
        # does (not while it queues behind a large batch) and waiting on them stays cheap
        self._cap = max(2, 2 * cpus)
        self._backlog: list[tuple[ReadJob, str, tuple[int, int] | None]] = []  # (job, "open"/"read", range)
        self._cancelled: set[int] = set()
        self.peak_rss_mb = 0.0  # not reported from the cluster

    def add_busy(self, seconds: float) -> None:
        """The driver's own time does not count against a task's limit (each task keeps its own clock)."""

    def run(self, jobs: Sequence[ReadJob]) -> Generator[ReadEvent, None, None]:
        self._backlog = [(job, "open", None) for job in reversed(jobs)]
        try:
            while self._tasks or self._backlog:
                self._fill()
                refs = list(self._tasks)
                ready, _ = self._ray.wait(refs, num_returns=1, timeout=0.5)
                if ready:  # everything ready now, not one result per wait
                    ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref in ready:
                    task = self._tasks.pop(ref)
                    if task.job.job_id in self._cancelled:
                        continue
                    yield from self._finished(ref, task)
                yield from self._overdue()
            if self._to_embed:
                yield from self._read_and_embed()
        finally:
            self.close()

    def _fill(self) -> None:
        """Submit backlog tasks (next one last) while fewer than the cap are out."""
        while self._backlog and len(self._tasks) < self._cap:
            job, kind, pages = self._backlog.pop()
            if job.job_id in self._cancelled:
                continue
            if kind == "open":
                self._tasks[self._open.remote(job, self.opts, self.timeout_s)] = _Task(job, kind, time.monotonic())
                continue
            assert pages is not None
            ref = self._read.remote(job, self.opts, pages[0], pages[1], self.timeout_s, self.writers)
            self._tasks[ref] = _Task(job, kind, time.monotonic())

    def _finished(self, ref: Any, task: _Task) -> Iterator[ReadEvent]:
        job = task.job
        try:
            kind, payload = self._ray.get(ref)
        except self._ray.exceptions.RayError as e:  # the worker died MAX_RETRIES + 1 times, or the task was lost
            yield ReadFailed(job, *self._crashed(job, e.__class__.__name__))
            return
        if kind == "failed":
            yield ReadFailed(job, *payload)
            return
        if task.kind == "open":
            count = int(payload)
            size = RAY_RENDER_PART_PAGES if job.render else RAY_PART_PAGES
            ranges = [(a, min(count, a + size)) for a in range(0, count, size)] or [(0, 0)]
            yield ReadStarted(job)
            yield ReadOpened(job, count, ranges)
            if self.encoder is not None and job.render:  # read and embedded by Ray Data once all files are open
                self._to_embed += [(job, a, b) for a, b in ranges]
            else:
                self._backlog += [(job, "read", r) for r in reversed(ranges)]  # next, before later files' opens
            return
        yield from self._range_read(job, payload) if kind == "pages" else self._range_written(job, payload)

    @staticmethod
    def _range_written(job: ReadJob, written: Any) -> Iterator[ReadEvent]:
        yield PagesWritten(job, written)
        yield ReadDone(job)

    def _range_read(self, job: ReadJob, pages: list[Any]) -> Iterator[ReadEvent]:
        batch = self.opts.batch_pages
        for i in range(0, len(pages), batch):  # the pipeline writes in batches, as pages come from local readers
            yield PagesRead(job, pages[i:i + batch])
        yield ReadDone(job)  # this range is done: one "done" per range, as local readers send per part

    def _read_and_embed(self) -> Iterator[ReadEvent]:
        from ingest.ray_data import read_and_embed

        ranges, self._to_embed = self._to_embed, []
        hard_stop = max(HARD_STOP * self.timeout_s, self.timeout_s + 30)  # the watchdog's grace: no retry race
        for k, kind, payload in read_and_embed(ranges, self.opts, self.timeout_s, hard_stop,
                                               self.encoder, self._embed_actors, self._gpus, MAX_RETRIES,
                                               self.writers, self._actor_cpus):
            job = ranges[k][0]
            if job.job_id in self._cancelled:
                continue
            if kind == "pages":
                yield from self._range_read(job, payload)
                continue
            if kind == "written":
                yield from self._range_written(job, payload)
                continue
            self._cancelled.add(job.job_id)  # one failure per file; the rest of its ranges is dropped
            yield ReadFailed(job, *(payload if kind == "failed" else self._crashed(job, payload)))

    @staticmethod
    def _crashed(job: ReadJob, why: str) -> tuple[str, str]:
        err = WorkerCrashed(f"{job.label} crashed the PDF reader on the Ray cluster ({why}); the file is probably "
                            "malformed — re-export or repair it (e.g. qpdf) and retry")
        return err.code, err.message

    def _overdue(self) -> Iterator[ReadEvent]:
        """Tasks still running HARD_STOP times the limit after they were submitted (stuck in native code, beyond
        the task's own timer); a task that has finished is never overdue, however long the driver took."""
        now = time.monotonic()
        late = [ref for ref, t in self._tasks.items() if now - t.submitted > HARD_STOP * self.timeout_s]
        if not late:
            return
        done, _ = self._ray.wait(late, num_returns=len(late), timeout=0)
        for ref in set(late) - set(done):
            task = self._tasks.get(ref)
            if task is not None and task.job.job_id not in self._cancelled:
                self.cancel(task.job)
                yield ReadFailed(task.job, *_timeout(task.job, self.timeout_s))

    def cancel(self, job: ReadJob) -> None:
        """Stop reading ``job``'s file: its tasks are cancelled (their workers killed), later results dropped."""
        self._cancelled.add(job.job_id)
        self._backlog = [b for b in self._backlog if b[0].job_id != job.job_id]
        for ref, task in list(self._tasks.items()):
            if task.job.job_id == job.job_id:
                self._stop(ref)
                del self._tasks[ref]

    def _stop(self, ref: Any) -> None:
        """Cancel a task, killing its worker (a read stuck in native code)."""
        self._ray.cancel(ref, force=True)
        self._stopped.append(ref)

    def close(self) -> None:
        for ref in self._tasks:
            self._stop(ref)
        self._tasks.clear()
        self._backlog = []
        self._to_embed = []
        if self._stopped and self.writers is not None:  # their workers are gone before the caller cleans up
            _, running = self._ray.wait(self._stopped, num_returns=len(self._stopped), timeout=30)
            if running:  # their late writes are taken back by the writers themselves (ingest.write)
                log.warning("%d cancelled Ray tasks still running after 30 s", len(running))
        self._stopped = []
