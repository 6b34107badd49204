"""Jobs: an upload's ingest or a batch extraction, run in the background by the API's job runner (app/jobs.py)
and kept in the catalog, so a client polls ``GET /jobs/{id}`` and a restarted server resumes what was cut off."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.results import BatchResult, IngestReport

JobKind = Literal["ingest", "extract"]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running")  # what a restarted server resumes
FINISHED_STATES: tuple[JobState, ...] = ("done", "failed", "cancelled")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JobProgress(_Frozen):
    """How far a job is. Ingest: files and their pages (``pages_total`` counts the pages of the files opened so
    far, so it grows). Extract: documents as ``files_*`` and their pages, counted as each document finishes."""

    files_done: int = 0
    files_total: int = 0
    pages_done: int = 0
    pages_total: int = 0
    current: str | None = Field(None, description="the file or document being worked on")
    work_done: float | None = Field(None, description="ingest: files finished plus the share read of those being "
                                                      "read (out of files_total; it never goes back)")


class JobError(_Frozen):
    """One file's (or document's) failure inside a job; the job itself goes on."""

    path: str
    doc_id: str | None = None
    code: str
    message: str


class Job(_Frozen):
    """A job as ``GET /jobs/{id}`` shows it. ``result`` when done: the IngestReport (ingest) or one BatchResult
    per document (extract); cancelled jobs keep what they finished in ``result`` too. ``error``: why the job
    as a whole failed (``errors`` are per file)."""

    job_id: str
    kind: JobKind
    state: JobState
    params: dict[str, Any] = Field(default_factory=dict, description="what was asked: ingest: files (their names) "
                                   "and collection; extract: schema, doc_ids, max_pages")
    progress: JobProgress = Field(default_factory=JobProgress)
    errors: list[JobError] = Field(default_factory=list)
    error: JobError | None = None
    result: IngestReport | list[BatchResult] | None = None
    cancel_requested: bool = False
    key_name: str | None = Field(None, description="the API key that submitted it (null: a local shell)")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
