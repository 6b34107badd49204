"""The API's job runner: uploads and batch extractions run here, one job at a time in creation order, on one
background thread started with the API. A job's state, progress and result live in the catalog (``jobs``), so
any process can read them and a restarted API resumes what a killed one left ``queued`` or ``running`` — running
a job again from its start is correct, since an ingest skips what is already stored (content hashes) and a batch
extraction skips the documents already extracted with the same schema, model and prompt.

Cancelling is cooperative: the job stops at its next file or page batch (ingest) or finished document (extract).
What an ingest left half-written is removed at once by the service's reconcile; finished files stay ingested."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from app.batch import extract_each
from app.service import Service
from schemas.access import LOCAL_ADMIN, Principal
from schemas.errors import ConfigError, DiskFull, PageLensError, PasswordRequired, WrongPassword
from schemas.jobs import FINISHED_STATES, Job, JobError, JobProgress, JobState
from schemas.results import BatchResult, FileOutcome, IngestReport
from store.space import check_free

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.2  # at most this often a running job writes its progress (and reads whether to stop)


class JobCancelled(Exception):
    """Raised inside a running job (from its progress callback) when a cancel was asked; not a PageLensError, so
    no per-file error handler swallows it."""


class JobInterrupted(Exception):
    """Raised inside a running job when the server shuts down: the job goes back to ``queued``."""


def new_job_id() -> str:
    return uuid.uuid4().hex


UNRECORDED_GRACE_S = 3600.0  # an upload folder with no job is left alone this long: another process may be saving it


def _untouched_for(folder: Path, seconds: float) -> bool:
    """Whether nothing in ``folder`` (itself included) was modified in the last ``seconds``."""
    try:
        newest = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])
    except OSError:  # removed meanwhile
        return False
    return time.time() - newest > seconds


def upload_paths(job_dir: Path, names: list[str]) -> list[Path]:
    """Where an upload job's files are saved: one numbered folder per file (each keeps the client's name; the
    numbers are zero-padded so the files sort in upload order)."""
    return [job_dir / f"{i:04d}" / name for i, name in enumerate(names)]


def api_wording(outcome: FileOutcome) -> FileOutcome:
    """The outcome with password errors in the API's terms (the reader's messages speak of the CLI's
    --password)."""
    name, error = outcome.path, outcome.error
    if error is not None and error.code == PasswordRequired.code:
        error = error.model_copy(update={"message": f"{name} is password protected; send its password in the "
                                                   "`password` form field"})
    elif error is not None and error.code == WrongPassword.code:
        error = error.model_copy(update={"message": f"the password given does not open {name}; check the "
                                                   "`password` form field and retry"})
    return outcome.model_copy(update={"error": error})


class _Tracker:
    """A running job's progress, written to the catalog at most every PROGRESS_EVERY_S (and whenever a file
    finishes); each write reads back whether a cancel was asked, and raises JobCancelled then."""

    def __init__(self, runner: JobRunner, job_id: str, progress: JobProgress) -> None:
        self.runner, self.job_id, self.progress = runner, job_id, progress
        self.errors: list[JobError] = []
        self.results: list[BatchResult] = []  # an extraction's finished documents (a cancelled job keeps them)
        self._last = 0.0

    def update(self, *, force: bool = False, **changes: Any) -> None:
        files_before = self.progress.files_done
        self.progress = self.progress.model_copy(update=changes)
        if self.runner.stopping:
            raise JobInterrupted
        now = time.monotonic()
        if force or self.progress.files_done != files_before or now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            if self.runner.svc.catalog.update_job(self.job_id, progress=self.progress.model_dump(),
                                                  errors=[e.model_dump() for e in self.errors]):
                raise JobCancelled


class JobRunner:
    """Runs the catalog's queued jobs, oldest first, one at a time, on one thread (``start``/``stop``).

    A PDF password is held in memory only, never written to the catalog: a job resumed after a restart runs
    without it (its encrypted files fail with ``password_required``; upload them again with the password)."""

    def __init__(self, svc: Service, *, poll_s: float = 2.0) -> None:
        self.svc = svc
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.poll_s = poll_s  # a fallback: a job submitted here wakes the runner at once
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ended = threading.Condition()
        self._thread: threading.Thread | None = None
        self._passwords: dict[str, str] = {}
        self._raised: dict[str, PageLensError] = {}  # why a job failed, for a caller waiting on it here

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- life -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Resume the jobs a killed process left ``running``, drop the folders of ended jobs, start the thread."""
        self._resume_orphans()
        self._drop_ended_folders()
        self._thread = threading.Thread(target=self._loop, name="pagelens-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop at the running job's next file or page batch; that job goes back to ``queued`` (a restart
        resumes it)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _resume_orphans(self) -> None:
        """``running`` jobs whose runner is gone go back to ``queued``: a runner of this host whose process is
        gone (or this process: the stores are ours, so no other runner here is alive), and, on the embedded
        catalog (one process owns the data dir), any runner. A job claimed by a live runner on another host of a
        shared database is left to it."""
        import psutil

        host, pid = self.owner.rsplit(":", 1)
        embedded = self.svc.settings.database_url is None
        for job_id, owner in self.svc.catalog.job_owners("running").items():
            o_host, _, o_pid = (owner or "").rpartition(":")
            same_host_gone = o_host == host and (not o_pid.isdigit() or o_pid == pid
                                                 or not psutil.pid_exists(int(o_pid)))
            if owner is None or same_host_gone or embedded:
                log.info("job %s was left running by %s; it runs again", job_id, owner)
                self.svc.catalog.requeue_job(job_id)

    def _drop_ended_folders(self) -> None:
        root = self.svc.settings.data_dir / "jobs"
        if not root.is_dir():
            return
        for d in root.iterdir():
            try:
                ended = self.svc.catalog.get_job(d.name).state in FINISHED_STATES
            except PageLensError:  # no such job: a process killed between saving the files and recording the job —
                ended = _untouched_for(d, UNRECORDED_GRACE_S)  # or another process on this data dir saving them now
            if ended:
                shutil.rmtree(d, ignore_errors=True)

    # -- submitting ---------------------------------------------------------------------------------
    def submit_ingest(self, job_id: str, names: list[str], *, collection: str | None = None,
                      password: str | None = None, key_name: str | None = None) -> Job:
        """Queue the ingest of files already saved at ``upload_paths(svc.job_dir(job_id), names)``, for the key
        ``key_name`` (None: a local shell)."""
        if password:
            self._passwords[job_id] = password
        job = self.svc.catalog.add_job(job_id, "ingest", {"files": names, "collection": collection},
                                       key_name=key_name,
                                       collections=[collection or self.svc.settings.default_collection])
        self._wake.set()
        return job

    def submit_extract(self, schema: dict[str, Any], docs: list[tuple[str, str]], *, max_pages: int,
                       key_name: str | None = None) -> Job:
        """Queue a batch extraction of ``schema`` from each of ``docs`` ((doc_id, name) pairs)."""
        collections = self.svc.catalog.collections_of([d for d, _ in docs]).values()
        job = self.svc.catalog.add_job(new_job_id(), "extract", {"schema": schema, "docs": [list(d) for d in docs],
                                                                 "max_pages": max_pages},
                                       key_name=key_name, collections=collections)
        self._wake.set()
        return job

    def wait(self, job_id: str, timeout_s: float | None = None) -> Job:
        """The job once it has ended (or as it is after ``timeout_s``). A job that failed here as a whole raises
        its error again, for callers that asked to wait (``POST /documents?wait=true``)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._ended:
            while (job := self.svc.catalog.get_job(job_id)).state not in FINISHED_STATES:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return job
                self._ended.wait(min(1.0, left) if left is not None else 1.0)
        raised = self._raised.pop(job_id, None)
        if raised is not None:
            raise raised
        return job

    # -- running ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        held = False
        while not self._stop.is_set():
            self._wake.clear()
            try:  # a disk that cannot take a job's writes: its jobs wait in the queue, never run into it
                check_free(self.svc.settings.data_dir, self.svc.settings.ingest.min_free_mb)
                if held:
                    log.warning("job runner: the disk has room again; running the queued jobs")
                held = False
            except DiskFull as e:
                if not held:
                    log.error("job runner: holding the queued jobs: %s", e.message)
                held = True
                self._wake.wait(self.poll_s)
                continue
            try:
                job = self.svc.catalog.claim_job(self.owner)
            except PageLensError as e:  # the catalog is down: say so, try again later
                log.error("job runner: cannot read the jobs: %s", e.message)
                job = None
            if job is None:
                self._wake.wait(self.poll_s)
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        log.info("job %s (%s) started", job.job_id, job.kind)
        tracker = _Tracker(self, job.job_id, job.progress)
        stopped: type[Exception] | None = None
        try:
            if job.kind == "ingest":
                result: Any = self._ingest(job, tracker)
            else:
                result = self._extract(job, tracker)
            self._finish(job, "done", tracker, result=result)
        except (JobCancelled, JobInterrupted) as e:
            stopped = type(e)
        except PageLensError as e:
            self._raised[job.job_id] = e
            self._finish(job, "failed", tracker, error=JobError(path="", code=e.code, message=e.message))
        except Exception as e:  # a bug costs this job only; the runner goes on with the next one
            log.exception("job %s failed", job.job_id)
            self._finish(job, "failed", tracker, error=JobError(
                path="", code="internal_error", message=f"an unexpected error occurred ({e.__class__.__name__}); "
                                                        "see the server log"))
        if stopped is None:
            return
        # out of the except block: the stopped ingest's frames (and its page readers) are gone before the clean-up
        self._clean_after_ingest(job)
        if stopped is JobCancelled:
            self._finish(job, "cancelled", tracker, result=self._partial(job, tracker))
        else:
            self.svc.catalog.requeue_job(job.job_id)
            log.info("job %s stopped by the server's shutdown; it runs again at the next start", job.job_id)

    def _finish(self, job: Job, state: JobState, tracker: _Tracker, *, result: Any = None,
                error: JobError | None = None) -> None:
        try:
            self.svc.catalog.finish_job(job.job_id, state, result=result, error=error.model_dump() if error else None,
                                        errors=[e.model_dump() for e in tracker.errors],
                                        progress=tracker.progress.model_dump())
        except PageLensError as e:  # the catalog is gone: the job stays running there and is resumed at restart
            log.error("job %s ended %s but could not be recorded: %s", job.job_id, state, e.message)
        if job.kind == "ingest":
            shutil.rmtree(self.svc.job_dir(job.job_id), ignore_errors=True)  # the files are in the store now
        self._passwords.pop(job.job_id, None)
        log.info("job %s %s", job.job_id, state)
        with self._ended:
            self._ended.notify_all()

    def _clean_after_ingest(self, job: Job) -> None:
        """Remove what a stopped ingest left half-written (its current document, files stored for documents it
        had not reached), now rather than at the next ingest."""
        if job.kind == "ingest":
            try:
                self.svc.reconcile()
            except PageLensError as e:
                log.error("after job %s: could not clean up (the next ingest will): %s", job.job_id, e.message)

    @staticmethod
    def _partial(job: Job, tracker: _Tracker) -> list[dict[str, Any]] | None:
        """What a cancelled job keeps as its result: an extraction's finished documents (an ingest's finished
        files are in the library; its progress says how many)."""
        return [r.model_dump(mode="json") for r in tracker.results] if job.kind == "extract" else None

    # -- the two kinds ------------------------------------------------------------------------------
    def _ingest(self, job: Job, tracker: _Tracker) -> dict[str, Any]:
        names: list[str] = job.params["files"]
        paths = upload_paths(self.svc.job_dir(job.job_id), names)
        if not all(p.is_file() for p in paths):
            raise ConfigError(f"the uploaded files of job {job.job_id} are gone from {self.svc.job_dir(job.job_id)}; "
                              "upload them again", code="job_files_missing")
        tracker.update(force=True, files_total=len(paths))

        def on_progress(p: Any) -> None:
            tracker.update(files_done=p.files_done, files_total=p.files_total, pages_done=p.pages_done,
                           pages_total=p.pages_total, current=p.current or tracker.progress.current,
                           work_done=p.work_done)

        report: IngestReport = self.svc.ingest(paths, collection=job.params.get("collection"),
                                               password=self._passwords.get(job.job_id), on_progress=on_progress,
                                               names=dict(zip(paths, names, strict=True)), let_deletes_in=True,
                                               who=_submitter(job))
        report = report.model_copy(update={"files": [api_wording(f) for f in report.files]})
        tracker.errors = [JobError(path=f.path, doc_id=f.doc_id, code=f.error.code, message=f.error.message)
                          for f in report.files if f.error is not None]
        tracker.progress = tracker.progress.model_copy(update={"files_done": len(report.files), "current": None})
        return report.model_dump(mode="json")

    def _extract(self, job: Job, tracker: _Tracker) -> list[dict[str, Any]]:
        docs = [(d, n) for d, n in job.params["docs"]]
        found = {d.doc_id: d.page_count for d in self.svc.list_documents()}
        pages = {d: found.get(d, 0) for d, _ in docs}
        tracker.update(force=True, files_total=len(docs), pages_total=sum(pages.values()))

        def on_result(r: BatchResult) -> None:
            tracker.results.append(r)
            if r.error is not None:
                tracker.errors.append(JobError(path=r.path, doc_id=r.doc_id, code=r.error.get("code", "error"),
                                               message=r.error.get("message", "")))
            p = tracker.progress
            tracker.update(force=True, files_done=p.files_done + 1, current=r.path,
                           pages_done=p.pages_done + pages.get(r.doc_id or "", 0))

        out = extract_each(self.svc, job.params["schema"], docs, max_pages=job.params["max_pages"],
                           on_result=on_result, who=_submitter(job))
        tracker.progress = tracker.progress.model_copy(update={"current": None})
        return [r.model_dump(mode="json") for r in out]


def _submitter(job: Job) -> Principal:
    """Who a job acts for, in the audit log: the key that submitted it (its documents were checked against that
    key's collections when it was submitted), or the local shells."""
    return Principal(name=job.key_name, role="writer") if job.key_name else LOCAL_ADMIN
