"""Documents, pages and words: what ingest produces and the store keeps."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.coords import BBox

WordSource = Literal["text_layer", "ocr"]
PageWordsSource = Literal["text_layer", "ocr", "none"]
# partial: being ingested (or left by a killed run: the next run removes it); removing: being taken out (a failed
# file, or a delete) — writers elsewhere (Ray workers) no longer add to it, and a killed run's next run finishes it
DocumentStatus = Literal["partial", "complete", "removing"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Word(Frozen):
    """One word on a page with its box (BBox contract) and where it came from.

    ``confidence`` is 1.0 for the text layer and the OCR engine's score (0–1) for OCR words.
    """

    text: str
    bbox: BBox
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    source: WordSource = "text_layer"


class Page(Frozen):
    """A page as displayed: size in PDF points (rotation applied), 1-based number, words source."""

    doc_id: str
    page_no: int = Field(ge=1)
    width_pt: float = Field(gt=0)
    height_pt: float = Field(gt=0)
    rotation: int = 0
    words_source: PageWordsSource
    word_count: int = Field(ge=0)
    caption: str | None = None
    headings: list[str] = []  # the page's section titles: outline entries pointing here, lines in a larger font


class Document(Frozen):
    """A stored document. ``doc_id`` is the sha256 of its bytes; ``names`` are the file names seen for it."""

    doc_id: str
    name: str
    names: list[str] = Field(default_factory=list)
    kind: Literal["pdf", "image"]
    collection: str
    size_bytes: int
    page_count: int
    status: DocumentStatus
    stages: dict[str, str] = Field(default_factory=dict, description="stage (words, index, embed, caption) -> "
                                                                     "version of what produced it")
    pending: list[str] = Field(default_factory=list, description="stages that could not run yet")
    words_sources: dict[str, int] = Field(default_factory=dict, description="words source -> page count")
    created_at: datetime | None = None
