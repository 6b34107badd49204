"""The catalog's job queue: the API's uploads and batch extractions, their state, progress and results, and the
collections each touches (a key sees a job only when it sees all of them). Any process can read and cancel."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from schemas.errors import Conflict, NotFound
from schemas.jobs import Job, JobKind, JobState
from store.sql_errors import translated
from store.tables import job_collections, jobs, now


@translated
class JobQueue:
    """Part of ``store.catalog.Catalog`` (which owns ``engine``)."""

    engine: Engine

    @staticmethod
    def _job(row: Any) -> Job:
        return Job(job_id=row.id, kind=row.kind, state=row.state, params=json.loads(row.params),
                   progress=json.loads(row.progress), errors=json.loads(row.errors),
                   error=json.loads(row.error) if row.error else None,
                   result=json.loads(row.result) if row.result else None, cancel_requested=bool(row.cancel_requested),
                   key_name=row.key_name,
                   created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at)

    def add_job(self, job_id: str, kind: JobKind, params: dict[str, Any], *, key_name: str | None = None,
                collections: Iterable[str] = ()) -> Job:
        """Record a new job as ``queued``, submitted by ``key_name`` and touching ``collections``."""
        with self.engine.begin() as c:
            c.execute(insert(jobs).values(id=job_id, kind=kind, state="queued", params=json.dumps(params),
                                          progress="{}", errors="[]", cancel_requested=False, created_at=now(),
                                          key_name=key_name))
            for col in sorted(set(collections)):
                c.execute(insert(job_collections).values(job_id=job_id, collection=col))
        return self.get_job(job_id)

    @staticmethod
    def _jobs_within(q: Any, collections: Collection[str] | None) -> Any:
        """``q`` restricted to the jobs whose collections are all in ``collections`` (and that name some)."""
        if collections is None:
            return q
        jc = job_collections
        outside = select(jc.c.job_id).where(jc.c.job_id == jobs.c.id, jc.c.collection.not_in(sorted(collections)))
        inside = select(jc.c.job_id).where(jc.c.job_id == jobs.c.id)
        return q.where(~outside.exists(), inside.exists())

    def get_job(self, job_id: str, collections: Collection[str] | None = None) -> Job:
        """Raises NotFound (also for a job outside ``collections``)."""
        with self.engine.connect() as c:
            row = c.execute(self._jobs_within(select(jobs).where(jobs.c.id == job_id), collections)).first()
        if row is None:
            raise NotFound(f"no job '{job_id[:64]}'; list the recent ones with GET /jobs (or: pagelens jobs)")
        return self._job(row)

    def list_jobs(self, state: JobState | None = None, limit: int = 50,
                  collections: Collection[str] | None = None) -> list[Job]:
        """The newest ``limit`` jobs, newest first; only those in ``state`` when given, within ``collections``."""
        q = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
        if state is not None:
            q = q.where(jobs.c.state == state)
        with self.engine.connect() as c:
            return [self._job(r) for r in c.execute(self._jobs_within(q, collections))]

    def active_jobs_of(self, key_name: str) -> list[str]:
        """The ids of ``key_name``'s jobs that are queued or running."""
        q = select(jobs.c.id).where(jobs.c.key_name == key_name, jobs.c.state.in_(["queued", "running"]))
        with self.engine.connect() as c:
            return list(c.execute(q).scalars())

    def queued_jobs_of(self, key_name: str) -> int:
        """How many of ``key_name``'s jobs are queued or running (the fair-share cap)."""
        q = select(func.count()).select_from(jobs).where(jobs.c.key_name == key_name,
                                                          jobs.c.state.in_(["queued", "running"]))
        with self.engine.connect() as c:
            return int(c.execute(q).scalar_one())

    def job_owners(self, state: JobState) -> dict[str, str | None]:
        """``job_id -> owner`` (the runner's host:pid) of the jobs in ``state``."""
        with self.engine.connect() as c:
            return dict(c.execute(select(jobs.c.id, jobs.c.owner).where(jobs.c.state == state)).tuples().all())

    def claim_job(self, owner: str) -> Job | None:
        """The oldest queued job, now ``running`` and owned by ``owner``; None when none is queued. Atomic: two
        runners over one database never claim the same job."""
        while True:
            with self.engine.begin() as c:
                row = c.execute(select(jobs.c.id).where(jobs.c.state == "queued")
                                .order_by(jobs.c.created_at, jobs.c.id).limit(1)).first()
                if row is None:
                    return None
                claimed = c.execute(update(jobs).where(jobs.c.id == row.id, jobs.c.state == "queued")
                                    .values(state="running", owner=owner, started_at=now())).rowcount
            if claimed:
                return self.get_job(row.id)

    def requeue_job(self, job_id: str) -> None:
        """A ``running`` job whose runner is gone goes back to ``queued`` (it is run again from the start)."""
        with self.engine.begin() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "running")
                      .values(state="queued", owner=None))

    def update_job(self, job_id: str, *, progress: dict[str, Any] | None = None,
                   errors: list[dict[str, Any]] | None = None) -> bool:
        """Record a running job's progress (and per-file errors so far). Returns whether a cancel was asked."""
        values: dict[str, Any] = {}
        if progress is not None:
            values["progress"] = json.dumps(progress)
        if errors is not None:
            values["errors"] = json.dumps(errors)
        with self.engine.begin() as c:
            if values:
                c.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            asked = c.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar()
        return bool(asked)

    def finish_job(self, job_id: str, state: JobState, *, result: Any = None,
                   errors: list[dict[str, Any]] | None = None, error: dict[str, Any] | None = None,
                   progress: dict[str, Any] | None = None) -> None:
        """Record a job's end: ``done``, ``failed`` or ``cancelled``, with what it produced (JSON-able)."""
        values: dict[str, Any] = {"state": state, "finished_at": now(),
                                  "result": json.dumps(result) if result is not None else None,
                                  "error": json.dumps(error) if error is not None else None}
        if errors is not None:
            values["errors"] = json.dumps(errors)
        if progress is not None:
            values["progress"] = json.dumps(progress)
        with self.engine.begin() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job: a queued one is ``cancelled`` at once (it never runs); a running one is asked to stop
        (its runner stops at the next file or page batch). Raises NotFound, or Conflict for a finished job."""
        with self.engine.begin() as c:
            changed = c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "queued")
                                .values(state="cancelled", cancel_requested=True, finished_at=now())).rowcount
            changed += c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "running")
                                 .values(cancel_requested=True)).rowcount
        job = self.get_job(job_id)
        if not changed:
            raise Conflict(f"job {job_id} has already ended ({job.state}); there is nothing to cancel")
        return job
