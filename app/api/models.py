"""What the API's routes take and give beyond the project's own models: request bodies, every field bounded."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.access import KeyInfo, Role
from schemas.answers import Extraction

DocRef = Annotated[str, Field(min_length=1, max_length=300)]  # an id, id prefix or file name
MAX_DOC_REFS = 1000


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=100)
    collection: str | None = Field(None, max_length=200)
    doc_ids: list[DocRef] | None = Field(None, max_length=MAX_DOC_REFS)


class DocumentSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=100)
    collection: str | None = Field(None, max_length=200)


class AskRequest(SearchRequest):
    k: int = Field(3, ge=1, le=20)


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the fields to extract")
    doc_ids: list[DocRef] = Field(min_length=1, max_length=MAX_DOC_REFS)
    max_pages: int = Field(8, ge=1, le=64)
    save: bool = Field(True, description="keep the extraction in the catalog (false: an evaluation run)")


class ExtractJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the fields to extract")
    doc_ids: list[DocRef] | None = Field(None, min_length=1, max_length=MAX_DOC_REFS,
                                         description="the documents (ids, id prefixes, names); "
                                      "leave out for every document")
    max_pages: int = Field(8, ge=1, le=64)


class StoredExtraction(BaseModel):
    extraction: Extraction
    corrections: dict[str, Any] = Field(description="field path -> the value a person set by hand")


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(min_length=1, max_length=1000, description="the field's path, as in the extraction")
    value: str | int | float | bool | None


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: Role
    collections: list[str] | None = Field(None, max_length=1000, description="null: every collection")
    expires: str | None = Field(None, max_length=40, description="30d, 12h, 90m or an ISO date; null: never")


class NewKeyOut(KeyInfo):
    key: str = Field(description="the key: shown this once")


class LocateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_id: DocRef
    page: int = Field(ge=1, le=1_000_000)
    value: Annotated[str, Field(max_length=10_000)] | int | float
    near: list[float] | None = Field(None, min_length=4, max_length=4)


class ConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=200, description="shown in lists; the first question when left out")
    collection: str | None = Field(None, max_length=200, description="ask in this collection only; null: every "
                                                                     "collection the key sees")


class MessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=1000)
    k: int = Field(3, ge=1, le=20, description="pages retrieved for the answer")
