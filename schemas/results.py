"""What crosses to users: search hits, ingest reports and batch-extraction results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.documents import Word

FileStatus = Literal["ingested", "unchanged", "failed"]
BatchStatus = Literal["extracted", "skipped", "failed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Hit(_Frozen):
    """A retrieved page: 1-based ``page``, fused score, and the page's words that best match the question."""

    doc_id: str
    path: str
    collection: str
    page: int = Field(ge=1)
    score: float = Field(description="the fused score (weighted DBSF by default, or RRF; its scale depends on "
                                   "the fusion and how many lists)")
    relevance: float = Field(0.0, ge=0, le=1, description="the score over its best possible: 1.0 is first in "
                                                           "every fused list (SigLIP, captions, BM25)")
    snippet: str = Field("", description="the page's own text around its best run of matching words")
    words: list[Word] = Field(default_factory=list)
    caption: str | None = None


class ErrorInfo(_Frozen):
    code: str
    message: str


class FileOutcome(_Frozen):
    """One input file's outcome in an ingest run."""

    path: str
    doc_id: str | None
    status: FileStatus
    pages: int = 0
    pending: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    error: ErrorInfo | None = None
    warnings: list[str] = Field(default_factory=list, description="what could not be read (e.g. a page's OCR); "
                                "those stages are pending and retried by the next ingest")


class IngestReport(_Frozen):
    files: list[FileOutcome]
    seconds: float = 0.0
    reader_peak_mb: float = Field(0.0, description="the largest resident memory a page reader reported (MB); "
                                  "readers stopped at their cap report nothing")

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "failed"]

    def count(self, status: FileStatus) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def pages(self) -> int:
        return sum(f.pages for f in self.files if f.status == "ingested")


class BatchResult(BaseModel):
    """One document's line in a batch extraction: what was extracted (``data``), each field with value, boxes,
    status, confidence; or the ``error`` (code, message) that cost this document only."""

    doc_id: str | None
    path: str
    status: BatchStatus
    extraction_id: str | None = None
    data: dict[str, Any] | None = None
    fields: list[dict[str, Any]] = []
    error: dict[str, str] | None = None
