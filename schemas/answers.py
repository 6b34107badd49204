"""What the VLM side returns to users: grounded answers, extraction results, locate results."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.coords import BBox

GroundingStatus = Literal["verified", "approximate", "unverified"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PageRef(_Frozen):
    doc_id: str
    page: int = Field(ge=1)


class Evidence(_Frozen):
    """A quote supporting an answer, where it is on the page, and whether the page's words confirm it."""

    doc_id: str
    page: int = Field(ge=1)
    quote: str
    bbox: BBox | None
    status: GroundingStatus
    confidence: float = Field(ge=0, le=1)
    matched_text: str | None = None


class Usage(_Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Answer(_Frozen):
    """``found=False`` is a first-class answer: the documents do not say."""

    question: str
    answer: str
    found: bool
    evidence: list[Evidence]
    model: str
    pages_used: list[PageRef]
    usage: Usage = Usage()
    consistent: bool = Field(False, description="the answer is backed by verified evidence and every number it "
                                                 "states is printed in that evidence (shown as confirmed only then)")


class Candidate(_Frozen):
    """Another place an ambiguous value is printed, as good a match as the one shown (best first, the shown one
    first): its box, one box per printed line, and the page's text there. ``doc_id``/``page`` in extractions
    (which read several pages); absent from ``locate`` (one page)."""

    bbox: BBox
    boxes: list[BBox]
    matched_text: str | None = None
    doc_id: str | None = None
    page: int | None = Field(None, ge=1)


class FieldBox(_Frozen):
    doc_id: str
    page: int = Field(ge=1)
    bbox: BBox | None


class Alternative(_Frozen):
    """Another value a long document gave for the same field (another page window), not chosen: a conflict the
    user should see rather than a candidate silently dropped."""

    value: Any
    boxes: list[FieldBox]
    confidence: float = Field(ge=0, le=1)
    status: GroundingStatus


class FieldSignals(_Frozen):
    """What the verifier saw for a field's value: the evidence a calibration profile maps to a probability."""

    similarity: float = Field(ge=0, le=1, description="how well the page's text matches the value (1: exactly)")
    ocr_score: float | None = Field(None, ge=0, le=1, description="the OCR engine's mean score for the matched "
                                                                  "words (null: the PDF's text layer)")
    model_prob: float | None = Field(None, ge=0, le=1, description="the model's mean token probability, where the "
                                                                   "backend gives one")
    matches: int = Field(1, ge=0, description="equally good places the value is printed on its page")
    near_model_box: bool | None = Field(None, description="found by the box the model gave (null: it gave none)")


class FieldResult(_Frozen):
    """One leaf of the user's schema. ``path`` is a JSON path like ``line_items[0].amount``. ``alternatives``:
    different values other page windows gave for it (long documents), best first."""

    path: str
    value: Any
    boxes: list[FieldBox]
    confidence: float = Field(ge=0, le=1, description="the probability that the value is right when ``calibrated``; "
                              "else the verifier's score (how well the value is found printed on the page)")
    status: GroundingStatus
    matched_text: str | None = None
    note: str | None = Field(None, description="why a field is not verified: no value given, not on the pages read")
    raw_confidence: float | None = Field(None, ge=0, le=1, description="the verifier's score, before calibration")
    calibrated: bool = Field(False, description="``confidence`` comes from a calibration profile fitted for this "
                             "model and schema (``pagelens calibrate fit``)")
    signals: FieldSignals | None = None
    corrected: bool = False
    alternatives: list[Alternative] = []
    candidates: list[Candidate] = Field(default_factory=list, description="an ambiguous value: every place it is "
                                        "printed as well as the one shown, best first (a reviewer picks one)")


class Extraction(_Frozen):
    """An extraction run: the validated data (the user's schema), each field's grounding, and provenance."""

    id: str
    data: dict[str, Any]
    fields: list[FieldResult]
    model: str
    schema_hash: str
    prompt_hash: str
    pages_used: list[PageRef]
    attempts: int = 1
    created_at: datetime | None = None
    usage: Usage = Usage()
    calibration: str | None = Field(None, description="the calibration profile applied (id and version), if any")
    calibration_note: str | None = Field(None, description="why no profile was applied when some exist")

    @property
    def conflicts(self) -> list[FieldResult]:
        """The fields for which page windows disagreed (each with its ``alternatives``)."""
        return [f for f in self.fields if f.alternatives]


class LocateResult(_Frozen):
    """Where a value is on a page. ``bbox``: all of it; ``boxes``: one per printed line it spans.
    ``ambiguous``: found in several places equally well and no hint box to choose (the first is shown);
    ``note``: why it is unverified or ambiguous."""

    id: Any = None
    status: GroundingStatus
    bbox: list[float] | None
    boxes: list[list[float]] = []
    confidence: float
    matched_text: str | None
    ambiguous: bool = False
    candidates: list[Candidate] = Field(default_factory=list, description="ambiguous: every equally good match, "
                                        "the one shown first")
    note: str | None = None
