"""Routes: jobs — batch extraction as a job, and every job's state, progress, errors and result; cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import GUARDED, Runner, Svc, Writer, fair_share
from app.api.models import ExtractJobRequest
from schemas.access import LOCAL_ADMIN
from schemas.jobs import Job, JobState

router = APIRouter(tags=["jobs"])


@router.post("/extract/jobs", dependencies=GUARDED, status_code=202, response_model=None,
             responses={202: {"model": Job, "description": "queued; poll the Location (/jobs/{id})"}})
def extract_job(svc: Svc, runner: Runner, who: Writer, req: ExtractJobRequest) -> JSONResponse:
    """Extract the schema from each document separately (all documents when ``doc_ids`` is left out), as a
    job: 202 with the job and ``Location: /jobs/{id}``; its result is one BatchResult per document. Documents
    already extracted with this schema, model and prompt are not extracted again."""
    docs = svc.batch_targets(req.json_schema, req.doc_ids, who=who)
    fair_share(svc, who)
    job = runner.submit_extract(req.json_schema, docs, max_pages=req.max_pages,
                                key_name=None if who is LOCAL_ADMIN else who.name)
    svc.audit(who, "extract job", "ok", detail=f"job {job.job_id}: {len(docs)} documents")
    return JSONResponse(job.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/{job.job_id}"})


@router.get("/jobs", dependencies=GUARDED)
def list_jobs(svc: Svc, who: Writer, state: JobState | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50
              ) -> list[Job]:
    """The newest jobs first (uploads and batch extractions), only those in ``state`` when given."""
    return svc.list_jobs(state, limit, who=who)


@router.get("/jobs/{job_id}", dependencies=GUARDED)
def get_job(svc: Svc, who: Writer, job_id: str) -> Job:
    """A job's state (queued, running, done, failed, cancelled), progress, per-file errors and, once done, its
    result (the IngestReport, or one BatchResult per document)."""
    return svc.get_job(job_id, who=who)


@router.delete("/jobs/{job_id}", dependencies=GUARDED, responses={409: {"description": "the job has ended"}})
def cancel_job(svc: Svc, who: Writer, job_id: str) -> Job:
    """Cancel a job: a queued one never runs; a running one stops at its next file or page batch (files it
    finished stay ingested; a half-read file is removed). Answers the job (``cancel_requested``)."""
    return svc.cancel_job(job_id, who=who)

