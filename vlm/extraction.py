"""Structured extraction into a user's JSON Schema or Pydantic model, every field grounded on its page."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from schemas.answers import Extraction, FieldBox, FieldResult, PageRef, Usage
from schemas.errors import InputError
from vlm import prompts
from vlm.backend import Message, VlmBackend
from vlm.families import box_bounds, box_instructions, to_bbox
from vlm.grounding import locate
from vlm.pages import PageInput
from vlm.structured import Leaf, bounded, generate_validated, grounded, inline_refs, schema_hash, ungrounded

Validator = Callable[[Any], Any]


def load_schema(spec: str | dict[str, Any] | type[BaseModel]) -> tuple[dict[str, Any], Validator]:
    """A user schema from a dict, a ``.json`` file path, ``module:Class`` (a Pydantic model) or a model class.
    Returns (JSON Schema, validator of plain data). Raises InputError with what to fix."""
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return spec.model_json_schema(), _pydantic_validator(spec)
    if isinstance(spec, dict):
        return spec, _jsonschema_validator(spec)
    if spec.endswith(".json") or Path(spec).is_file():
        p = Path(spec)
        if not p.is_file():
            raise InputError(f"schema file {spec} does not exist")
        try:
            schema = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"schema file {spec} is not valid JSON: {e}") from e
        return schema, _jsonschema_validator(schema)
    if ":" in spec:
        module, _, name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise InputError(f"cannot import {spec} ({e}); give module:Class of a Pydantic model on PYTHONPATH") from e
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise InputError(f"{spec} is not a Pydantic model class")
        return cls.model_json_schema(), _pydantic_validator(cls)
    raise InputError(f"schema '{spec}' is neither a .json file nor module:Class")


def _pydantic_validator(cls: type[BaseModel]) -> Validator:
    def validate(data: Any) -> Any:
        return cls.model_validate(data).model_dump(mode="json")

    return validate


def _jsonschema_validator(schema: dict[str, Any]) -> Validator:
    import jsonschema

    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise InputError("the schema must be a JSON Schema object with 'properties' (the fields to extract)")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise InputError(f"invalid JSON Schema: {e.message} (at {'/'.join(map(str, e.path)) or 'top'})") from e
    validator = cls(schema)

    def validate(data: Any) -> Any:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            raise ValueError(f"{e.message} at {'/'.join(map(str, e.path)) or 'top level'}")
        return data

    return validate


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

    model_check = _jsonschema_validator(model_schema)

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
        max_attempts=max_attempts, max_tokens=max_tokens)
    fields = [ground_field(leaf, pages, backend.family, resp.mean_token_prob) for leaf in leaves]
    return Extraction(id=uuid.uuid4().hex, data=data if isinstance(data, dict) else {"value": data}, fields=fields,
                      model=resp.model, schema_hash=schema_hash(plain),
                      prompt_hash=prompts.prompt_hash(prompts.SYSTEM, prompts.EXTRACT),
                      pages_used=[PageRef(doc_id=p.doc_id, page=p.page) for p in pages], attempts=attempts,
                      created_at=datetime.now(UTC),
                      usage=Usage(prompt_tokens=resp.prompt_tokens, completion_tokens=resp.completion_tokens))


def ground_field(leaf: Leaf, pages: Sequence[PageInput], family: str, model_prob: float | None) -> FieldResult:
    """Verify one extracted value on the page the model cited; also look on the other pages (a value found only
    elsewhere is ``approximate``; one found on several pages gets a box on each)."""
    if leaf.value is None or leaf.value == "" or isinstance(leaf.value, bool):
        cited = pages[leaf.page - 1] if leaf.page and 1 <= leaf.page <= len(pages) else None
        near = to_bbox(family, leaf.box, *cited.size) if cited and leaf.box else None
        boxes = [FieldBox(doc_id=cited.doc_id, page=cited.page, bbox=near)] if cited and near else []
        return FieldResult(path=leaf.path, value=leaf.value, boxes=boxes, confidence=0.0, status="unverified")
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
                           confidence=0.0, status="unverified")
    boxes = [FieldBox(doc_id=page.doc_id, page=page.page, bbox=b) for b in loc.boxes or [loc.bbox]]
    boxes += [FieldBox(doc_id=p.doc_id, page=p.page, bbox=lc.bbox) for _, p, lc in results
              if p is not page and lc.status == "verified"][:4]
    return FieldResult(path=leaf.path, value=leaf.value, boxes=boxes, confidence=round(conf, 4), status=status,
                       matched_text=matched)
