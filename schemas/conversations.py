"""Conversations: questions asked one after another, each answer kept with its citations exactly as answered.

A citation names the document (id, and its name and words version when it was answered), the page and the box the
verifier found. Shown again later, the same boxes are drawn; a citation whose document has since been deleted, or
re-read at another words version, says so (``state``) instead of pointing at something else."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.answers import Answer, GroundingStatus
from schemas.coords import BBox

CitationState = Literal["ok", "removed", "reread"]
CITATION_NOTES: dict[CitationState, str] = {
    "ok": "",
    "removed": "document removed since this answer: the citation is kept as answered, the page can no longer be "
               "shown",
    "reread": "document re-read since this answer (another words version): the box is drawn as it was answered",
}
MAX_TITLE = 200


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Citation(_Frozen):
    """One piece of evidence of an answer, frozen when it was answered."""

    n: int = Field(ge=1, description="its number in the answer (1 = first evidence)")
    doc_id: str
    document: str = Field(description="the document's name when it was answered")
    page: int = Field(ge=1)
    bbox: BBox | None
    quote: str
    status: GroundingStatus
    confidence: float = Field(ge=0, le=1)
    words_version: str | None = Field(None, description="the document's words stage version when answered")
    state: CitationState = Field("ok", description="ok; removed: the document is gone; reread: its words were "
                                                   "read again at another version since")
    note: str = ""


class Turn(_Frozen):
    """A question and its answer. ``standalone``: the question rewritten with the history before retrieval (the
    question itself when it needed no rewriting or no VLM could rewrite it)."""

    n: int = Field(ge=1)
    question: str
    standalone: str
    answer: Answer
    citations: list[Citation]
    created_at: datetime


class ConversationInfo(_Frozen):
    id: str
    title: str
    collection: str | None = Field(None, description="the collection it asks in (null: every one the key sees)")
    key_name: str = Field(description="the key that started it (it and admins see it)")
    turns: int = 0
    created_at: datetime
    updated_at: datetime


class Conversation(_Frozen):
    info: ConversationInfo
    turns: list[Turn]
