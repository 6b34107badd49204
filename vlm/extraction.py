"""Structured extraction into a user's JSON Schema or Pydantic model, every field grounded on its page.

``extract_pages`` is the one entry: a few pages are read in one VLM call (``extract``); a longer document field by
field in page windows (``extract_windows``), the pages for each field found by the search it is given (retrieval
is injected: this module knows no store). The schema side lives in ``vlm.user_schema``, the windows' plan and merge
in ``vlm.windows``, the check of every value against the page's words in ``grounding``."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from grounding.verifier import locate
from schemas.answers import Candidate, Extraction, FieldBox, FieldResult, FieldSignals, PageRef, Usage
from schemas.errors import InputError, ModelBehaviorError
from vlm import prompts
from vlm.backend import Message, VlmBackend
from vlm.families import box_bounds, box_instructions, to_bbox
from vlm.pages import PageInput
from vlm.structured import Leaf, bounded, generate_validated, grounded, inline_refs, schema_hash, ungrounded
from vlm.user_schema import Validator, field_question, is_array, jsonschema_validator
from vlm.windows import Merge, PageKey, Window, plan_windows, under

log = logging.getLogger(__name__)

Search = Callable[[str, int], Sequence[PageKey]]  # (question, k) -> the (doc_id, page) keys ranked best first
Render = Callable[[Sequence[PageKey]], Sequence[PageInput]]  # the pages' images and words, in the order asked


def extract_pages(backend: VlmBackend, schema: dict[str, Any], validate: Validator, keys: Sequence[PageKey], *,
                  render: Render, search: Search, max_pages: int, per_field: int, max_attempts: int = 3,
                  max_tokens: int = 1024) -> Extraction:
    """Extract ``schema`` from the pages ``keys`` (every page of the documents, in order). Up to ``max_pages``
    pages: one VLM call over all of them. Longer: each top-level field reads the pages ``search`` ranks highest
    for it (``field_question``: its name, title, description, and for a list its item fields) in windows of
    ``max_pages`` (``plan_windows``); fields that read the same pages share a call, at most ``per_field`` calls
    per top-level field whatever the length; each window's pages are rendered when its call comes."""
    if not keys:
        raise InputError("no pages to extract from; give documents that are ingested")
    if len(keys) <= max_pages:
        return extract(backend, schema, validate, render(keys), max_attempts=max_attempts, max_tokens=max_tokens)
    props = inline_refs(schema).get("properties")
    if not props:
        raise InputError(f"the documents have {len(keys)} pages, over --max-pages {max_pages}; a long document is "
                         "read field by field, and this schema names no fields (properties). Name the fields, or "
                         "extract from fewer pages.")
    position = {k: i for i, k in enumerate(keys)}
    ranked = {name: [k for k in search(field_question(name, sub), per_field * max_pages) if k in position]
              for name, sub in props.items()}
    windows = plan_windows(ranked, {n for n, sub in props.items() if is_array(sub)}, first=keys[0],
                           max_pages=max_pages, per_field=per_field, order=position.__getitem__)
    log.info("long extraction: %d fields in %d VLM calls", len(props), len(windows))
    return extract_windows(backend, schema, validate, [(w, _later(render, w.pages)) for w in windows],
                           max_attempts=max_attempts, max_tokens=max_tokens)


def _later(render: Render, pages: Sequence[PageKey]) -> Callable[[], Sequence[PageInput]]:
    return lambda: render(pages)


def _provenance(plain: dict[str, Any]) -> dict[str, str]:
    """What identifies an extraction's question: the schema's hash and the prompts'."""
    return {"schema_hash": schema_hash(plain), "prompt_hash": prompts.prompt_hash(prompts.SYSTEM, prompts.EXTRACT)}


def extract(backend: VlmBackend, schema: dict[str, Any], validate: Validator, pages: Sequence[PageInput], *,
            max_attempts: int = 3, max_tokens: int = 1024) -> Extraction:
    """Extract ``schema`` from ``pages``. The data validates against the user's schema (re-asked with the error
    up to ``max_attempts`` times, then ModelBehaviorError with the raw output)."""
    if not pages:
        raise InputError("no pages to extract from; give documents that are ingested")
    plain = inline_refs(schema)
    w, h = pages[0].size
    max_coord = box_bounds(backend.family, max(p.size[0] for p in pages), max(p.size[1] for p in pages))
    model_schema = grounded(bounded(plain), len(pages), max_coord)
    text = prompts.EXTRACT.format(n=len(pages), boxes=box_instructions(backend.family, w, h))

    model_check = jsonschema_validator(model_schema)

    def check(obj: Any) -> tuple[Any, list[Leaf]]:
        model_check(obj)  # the shape the model was asked for: every leaf as {value, page, bbox_2d}
        data, leaves = ungrounded(obj, plain)
        try:
            return validate(data), leaves
        except PydanticValidationError as e:
            raise ValueError(str(e)) from e

    parts: list = []
    for i, p in enumerate(pages, 1):
        parts += [f"Page image {i}:", p.image]
    (data, leaves), resp, attempts = generate_validated(
        backend, [Message("system", [prompts.SYSTEM]), Message("user", [*parts, text])], model_schema, check,
        max_attempts=max_attempts, max_tokens=max_tokens, pages=pages)
    fields = [ground_field(leaf, pages, backend.family, resp.mean_token_prob) for leaf in leaves]
    return Extraction(id=uuid.uuid4().hex, data=data if isinstance(data, dict) else {"value": data}, fields=fields,
                      model=resp.model, **_provenance(plain),
                      pages_used=[PageRef(doc_id=p.doc_id, page=p.page) for p in pages], attempts=attempts,
                      created_at=datetime.now(UTC),
                      usage=Usage(prompt_tokens=resp.prompt_tokens, completion_tokens=resp.completion_tokens))


def extract_windows(backend: VlmBackend, schema: dict[str, Any], validate: Validator,
                    windows: Sequence[tuple[Window, Callable[[], Sequence[PageInput]]]], *, max_attempts: int = 3,
                    max_tokens: int = 1024) -> Extraction:
    """Extract a top-level object schema from a long document in windows (``plan_windows``), one VLM call each,
    the pages rendered only for their call; merge the answers (``_Merge``) and validate them against the whole
    schema. Every value is verified on the pages of its own window."""
    plain = inline_refs(schema)
    props, required = plain.get("properties", {}), set(plain.get("required", []))
    merge = Merge({n for n, sub in props.items() if is_array(sub)})
    used: dict[PageKey, PageRef] = {}
    attempts = prompt_tokens = completion_tokens = 0
    model = ""
    for rank, (window, render) in enumerate(windows):
        pages = render()
        names = list(window.fields)
        sub = {"type": "object", "properties": {n: props[n] for n in names},
               "required": [n for n in names if n in required]}
        part = extract(backend, sub, jsonschema_validator(sub), pages, max_attempts=max_attempts,
                       max_tokens=max_tokens)
        for n in names:
            if n in part.data:
                merge.add(n, rank, part.data[n], [f for f in part.fields if under(f.path, n)])
        used.update({(p.doc_id, p.page): p for p in part.pages_used})
        attempts += part.attempts
        prompt_tokens += part.usage.prompt_tokens
        completion_tokens += part.usage.completion_tokens
        model = part.model
    data, fields = merge.result()
    try:
        data = validate(data)
    except (PydanticValidationError, ValueError) as e:
        raise ModelBehaviorError(f"the merged answer does not validate against the schema ({str(e)[:300]})",
                                 raw_output=json.dumps(data)[:4000], attempts=attempts) from e
    return Extraction(id=uuid.uuid4().hex, data=data if isinstance(data, dict) else {"value": data}, fields=fields,
                      model=model, **_provenance(plain),
                      pages_used=sorted(used.values(), key=lambda p: (p.doc_id, p.page)), attempts=attempts,
                      created_at=datetime.now(UTC),
                      usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))


def ground_field(leaf: Leaf, pages: Sequence[PageInput], family: str, model_prob: float | None) -> FieldResult:
    """Verify one extracted value on the page the model cited; also look on the other pages (a value found only
    elsewhere is ``approximate``; one found on several pages gets a box on each)."""
    if leaf.value is None or leaf.value == "" or isinstance(leaf.value, bool):
        cited = pages[leaf.page - 1] if leaf.page and 1 <= leaf.page <= len(pages) else None
        near = to_bbox(family, leaf.box, *cited.size) if cited and leaf.box else None
        boxes = [FieldBox(doc_id=cited.doc_id, page=cited.page, bbox=near)] if cited and near else []
        note = ("a yes/no value: there are no printed words to check it against" if isinstance(leaf.value, bool)
                else "no value: the model found none on the pages read")
        return FieldResult(path=leaf.path, value=leaf.value, boxes=boxes, confidence=0.0, status="unverified",
                           note=note, raw_confidence=0.0)
    cited_i = leaf.page - 1 if leaf.page and 1 <= leaf.page <= len(pages) else None
    results = []
    for i, p in enumerate(pages):
        near = to_bbox(family, leaf.box, *p.size) if (i == cited_i and leaf.box) else None
        loc = locate(leaf.value, p.words, near, model_prob=model_prob)
        if loc.status != "unverified":
            results.append((i, p, loc))
    on_cited = [r for r in results if r[0] == cited_i]
    if on_cited:
        _, page, loc = on_cited[0]
        status, conf, matched = loc.status, loc.confidence, loc.matched_text
    elif results:
        _, page, loc = max(results, key=lambda r: r[2].confidence)
        status, conf, matched = "approximate", loc.confidence * 0.75, loc.matched_text
    else:
        page = pages[cited_i] if cited_i is not None else pages[0]
        near = to_bbox(family, leaf.box, *page.size) if leaf.box and cited_i is not None else None
        return FieldResult(path=leaf.path, value=leaf.value,
                           boxes=[FieldBox(doc_id=page.doc_id, page=page.page, bbox=near)] if near else [],
                           confidence=0.0, status="unverified", raw_confidence=0.0,
                           signals=FieldSignals(similarity=0.0, model_prob=_prob(model_prob), matches=0),
                           note=f"{str(leaf.value)[:60]!r} is not on the pages read: a likely hallucination")
    boxes = [FieldBox(doc_id=page.doc_id, page=page.page, bbox=b) for b in loc.boxes or [loc.bbox]]
    boxes += [FieldBox(doc_id=p.doc_id, page=p.page, bbox=lc.bbox) for _, p, lc in results
              if p is not page and lc.status == "verified"][:4]
    candidates = [Candidate(bbox=c.bbox, boxes=list(c.boxes), matched_text=c.matched_text, doc_id=page.doc_id,
                            page=page.page) for c in loc.candidates]
    several = "printed in several places as well: every one is in candidates" if candidates else None
    signals = FieldSignals(similarity=round(loc.match_score, 4), ocr_score=loc.ocr_score, model_prob=_prob(model_prob),
                           matches=max(1, loc.matches),
                           near_model_box=None if not (leaf.box and on_cited) else not loc.far)
    return FieldResult(path=leaf.path, value=leaf.value, boxes=boxes, confidence=round(conf, 4), status=status,
                       matched_text=matched, candidates=candidates, note=several, raw_confidence=round(conf, 4),
                       signals=signals)


def _prob(p: float | None) -> float | None:
    return None if p is None else round(max(0.0, min(1.0, p)), 4)
