"""Routes: questions over the documents — search (pages and documents), ask, extract, stored extractions and their
corrections, and the verifier alone (locate)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import GUARDED, Reader, Svc, Writer
from app.api.models import (
    AskRequest,
    CorrectionRequest,
    DocumentSearchRequest,
    ExtractRequest,
    LocateRequest,
    SearchRequest,
    StoredExtraction,
)
from schemas.answers import Answer, Extraction, LocateResult
from schemas.results import Hit

router = APIRouter(tags=["queries"])


@router.post("/search", dependencies=GUARDED)
def search(svc: Svc, who: Reader, req: SearchRequest) -> list[Hit]:
    return svc.search(req.question, k=req.k, collection=req.collection, doc_ids=req.doc_ids, who=who)


@router.post("/search/documents", dependencies=GUARDED)
def search_documents(svc: Svc, who: Reader, req: DocumentSearchRequest) -> list[dict[str, Any]]:
    """The documents most about the question, best first: ``doc_id``, ``name``, ``score`` (its best page's) and
    ``pages`` (its matching pages, best first)."""
    return svc.search_documents(req.question, k=req.k, collection=req.collection, who=who)


@router.post("/ask", dependencies=GUARDED)
def ask(svc: Svc, who: Reader, req: AskRequest) -> Answer:
    return svc.ask(req.question, k=req.k, collection=req.collection, doc_ids=req.doc_ids, who=who)


@router.post("/extract", dependencies=GUARDED)
def extract(svc: Svc, who: Writer, req: ExtractRequest) -> Extraction:
    return svc.extract(req.json_schema, req.doc_ids, max_pages=req.max_pages, save=req.save, who=who)


@router.get("/extractions/{ex_id}", dependencies=GUARDED)
def get_extraction(svc: Svc, who: Writer, ex_id: str) -> StoredExtraction:
    """A stored extraction (``POST /extract``, or a batch job's ``extraction_id``) with its hand corrections."""
    ex, corrections = svc.get_extraction(ex_id, who=who)
    return StoredExtraction(extraction=ex, corrections=corrections)


@router.post("/extractions/{ex_id}/corrections", dependencies=GUARDED)
def correct_extraction(svc: Svc, who: Writer, ex_id: str, req: CorrectionRequest) -> StoredExtraction:
    """Keep a hand correction of one field; the model's value stays beside it."""
    svc.correct_extraction(ex_id, req.field, req.value, who=who)
    ex, corrections = svc.get_extraction(ex_id, who=who)
    return StoredExtraction(extraction=ex, corrections=corrections)


@router.post("/locate", dependencies=GUARDED)
def locate(svc: Svc, who: Reader, req: LocateRequest) -> LocateResult:
    return svc.locate(req.doc_id, req.page, req.value, req.near, who=who)

