"""Grounded question answering over page images, and page captions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from grounding.normalise import number_of
from grounding.verifier import locate
from schemas.answers import Answer, Evidence, PageRef, Usage
from vlm import prompts
from vlm.backend import Message, VlmBackend
from vlm.families import box_bounds, box_instructions, to_bbox
from vlm.pages import PageInput
from vlm.structured import generate_validated

Coord = Annotated[int, Field(ge=0, le=10000)]


class _EvidenceOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: int = Field(ge=1, le=64, description="number of the page image (1 = first image)")
    quote: str = Field(max_length=200, description="exact words from that page supporting the answer")
    bbox_2d: list[Coord] | None = Field(default=None, min_length=4, max_length=4)


class _AnswerOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    found: bool = Field(description="false when these pages do not answer the question")
    answer: str = Field(max_length=300)
    evidence: list[_EvidenceOut] = Field(default_factory=list, max_length=4)


class _CaptionOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(max_length=40, description="e.g. text, table, figure, form, invoice, title page, index")
    title: str = Field(max_length=100)
    entities: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=8)
    summary: str = Field(max_length=300)


def _images_message(pages: Sequence[PageInput], text: str) -> Message:
    parts: list = []
    for i, p in enumerate(pages, 1):
        parts += [f"Page image {i}:", p.image]
    return Message("user", [*parts, text])


def ask(backend: VlmBackend, question: str, pages: Sequence[PageInput], *, max_attempts: int = 3,
        max_tokens: int = 768) -> Answer:
    """Answer ``question`` from ``pages``; each evidence quote is verified against its page's words."""
    w, h = pages[0].size if pages else (1000, 1000)
    schema = _AnswerOut.model_json_schema()
    bound = box_bounds(backend.family, max(p.size[0] for p in pages), max(p.size[1] for p in pages)) if pages else 1000
    schema["$defs"]["_EvidenceOut"]["properties"]["bbox_2d"]["anyOf"][0]["items"]["maximum"] = bound
    schema["$defs"]["_EvidenceOut"]["properties"]["page"]["maximum"] = max(1, len(pages))
    text = prompts.ASK.format(question=question, n=len(pages), boxes=box_instructions(backend.family, w, h))

    def validate(obj: object) -> _AnswerOut:
        out = _AnswerOut.model_validate(obj)
        for e in out.evidence:
            if e.page > len(pages):
                raise ValueError(f"evidence page {e.page} does not exist; there are {len(pages)} page images")
        return out

    out, resp, _ = generate_validated(backend, [Message("system", [prompts.SYSTEM]), _images_message(pages, text)],
                                      schema, validate, max_attempts=max_attempts, max_tokens=max_tokens,
                                      pages=pages)
    evidence = []
    for e in out.evidence:
        page = pages[e.page - 1]
        near = to_bbox(backend.family, e.bbox_2d, *page.size) if e.bbox_2d else None
        loc = locate(e.quote, page.words, near, model_prob=resp.mean_token_prob)
        evidence.append(Evidence(doc_id=page.doc_id, page=page.page, quote=e.quote, bbox=loc.bbox, status=loc.status,
                                 confidence=loc.confidence, matched_text=loc.matched_text))
    pages_used = [PageRef(doc_id=p.doc_id, page=p.page) for p in pages]
    usage = Usage(prompt_tokens=resp.prompt_tokens, completion_tokens=resp.completion_tokens)
    if not (out.found and out.answer.strip()):
        return not_found(question, resp.model, pages_used, usage)
    return Answer(question=question, answer=out.answer, found=True, evidence=evidence, model=resp.model,
                  pages_used=pages_used, usage=usage, consistent=consistent(out.answer, evidence))


_NUMBER = re.compile(r"[-+]?\d[\d.,']*%?")


def _numbers(text: str) -> set[str]:
    return {n for tok in _NUMBER.findall(text) if (n := number_of(tok.rstrip(".,"))) is not None}


def consistent(answer: str, evidence: Sequence[Evidence]) -> bool:
    """Whether an answer is backed by its evidence: some quote is ``verified`` (found on the page), and every
    number the answer states is printed in a verified quote ("The total is 0" beside a verified "Total:
    1,234.56" is not)."""
    verified = [e.quote for e in evidence if e.status == "verified"]
    if not verified:
        return False
    printed = set().union(*(_numbers(q) for q in verified))
    return _numbers(answer) <= printed


def not_found(question: str, model: str, pages_used: Sequence[PageRef] = (), usage: Usage | None = None) -> Answer:
    """The first-class "these documents do not say" answer."""
    return Answer(question=question, answer=prompts.NOT_FOUND, found=False, evidence=[], model=model,
                  pages_used=list(pages_used), usage=usage or Usage())


def caption(backend: VlmBackend, page: PageInput, *, max_attempts: int = 2, max_tokens: int = 400) -> str:
    """A short factual caption: kind of page, title, key entities, what a figure or table shows."""
    out, _, _ = generate_validated(backend, [Message("system", [prompts.SYSTEM]),
                                             _images_message([page], prompts.CAPTION)],
                                   _CaptionOut.model_json_schema(), _CaptionOut.model_validate,
                                   max_attempts=max_attempts, max_tokens=max_tokens, pages=[page])
    text = f"{out.kind.strip()}: {out.title.strip()}. {out.summary.strip()}"
    if out.entities:
        text += " Entities: " + ", ".join(e.strip() for e in out.entities if e.strip()) + "."
    return text.strip()
