"""Structured extraction into a user's JSON Schema or Pydantic model, every field grounded on its page."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from schemas.answers import Alternative, Candidate, Extraction, FieldBox, FieldResult, PageRef, Usage
from schemas.errors import InputError, ModelBehaviorError
from vlm import prompts
from vlm.backend import Message, VlmBackend
from vlm.families import box_bounds, box_instructions, to_bbox
from vlm.grounding import locate
from vlm.pages import PageInput
from vlm.structured import Leaf, bounded, generate_validated, grounded, inline_refs, schema_hash, ungrounded

Validator = Callable[[Any], Any]

# Bounds on a user's schema, checked before anything walks, validates or expands it (a 1.7 KB schema whose
# $defs each reference the previous one twice expands to 2^16 copies).
MAX_SCHEMA_BYTES = 256 * 1024  # the schema as JSON
MAX_SCHEMA_DEPTH = 64  # nesting of JSON objects/arrays, after $ref expansion
MAX_SCHEMA_PROPERTIES = 1000  # property names, written out
MAX_SCHEMA_NODES = 50_000  # JSON values once every $ref is expanded (counted, never built)


def load_schema(spec: str | dict[str, Any] | type[BaseModel]) -> tuple[dict[str, Any], Validator]:
    """A user schema from a dict, a ``.json`` file path, ``module:Class`` (a Pydantic model) or a model class,
    bounded (``check_schema_bounds``) and checked. Returns (JSON Schema, validator of plain data). Raises
    InputError with what to fix."""
    given = read_schema(spec)
    if isinstance(given, type):
        return given.model_json_schema(), _pydantic_validator(given)
    check_schema_bounds(given)
    return given, _jsonschema_validator(given)


def read_schema(spec: str | dict[str, Any] | type[BaseModel]) -> dict[str, Any] | type[BaseModel]:
    """The schema as given, read but not yet bounded or checked (cheap: a file of at most MAX_SCHEMA_BYTES, an
    import). Raises InputError for a missing, oversized or unparsable file, or a class that cannot be imported."""
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return spec
    if isinstance(spec, dict):
        return spec
    if spec.endswith(".json") or Path(spec).is_file():
        return _read_schema_file(Path(spec))
    if ":" in spec:
        module, _, name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise InputError(f"cannot import {spec} ({e}); give module:Class of a Pydantic model on PYTHONPATH") from e
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise InputError(f"{spec} is not a Pydantic model class")
        return cls
    raise InputError(f"schema '{spec}' is neither a .json file nor module:Class")


def _read_schema_file(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise InputError(f"schema file {p} does not exist")
    if p.stat().st_size > MAX_SCHEMA_BYTES:
        raise InputError(f"schema file {p} is {p.stat().st_size / 1024:.0f} KB; a schema may have at most "
                         f"{MAX_SCHEMA_BYTES // 1024} KB")
    try:
        schema = json.loads(p.read_text())
    except (json.JSONDecodeError, RecursionError) as e:
        raise InputError(f"schema file {p} is not valid JSON (or nests too deeply): {e}") from e
    if not isinstance(schema, dict):
        raise InputError(f"schema file {p} holds a JSON {type(schema).__name__}; give a JSON Schema object")
    return schema


def check_schema_bounds(schema: Any) -> None:
    """Reject a schema too large to use, before it is validated or expanded: over MAX_SCHEMA_BYTES as JSON,
    MAX_SCHEMA_PROPERTIES properties, MAX_SCHEMA_DEPTH levels or MAX_SCHEMA_NODES values once its ``$ref``s
    are expanded (counted per definition, so an exponential expansion is rejected in linear time).
    Raises InputError saying which bound and what to do."""
    _check_written_size(schema)
    if _count_properties(schema) > MAX_SCHEMA_PROPERTIES:
        raise InputError(f"the schema has over {MAX_SCHEMA_PROPERTIES} properties; extract fewer fields at once")
    defs = {**_as_dict(schema, "definitions"), **_as_dict(schema, "$defs")} if isinstance(schema, dict) else {}
    _ExpandedSize(defs).of(schema, 0, ())


def _check_written_size(schema: Any) -> None:
    """Depth first (iteratively: a deep schema must not overflow Python's stack), then JSON size in bytes."""
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise InputError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels; flatten it")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack += [(c, depth + 1) for c in children if isinstance(c, dict | list)]
    size = len(json.dumps(schema, default=str).encode())
    if size > MAX_SCHEMA_BYTES:
        raise InputError(f"the schema is {size / 1024:.0f} KB of JSON; a schema may have at most "
                         f"{MAX_SCHEMA_BYTES // 1024} KB")


def _count_properties(node: Any) -> int:
    """Property names written in the schema (depth is already bounded, so recursion is safe)."""
    if isinstance(node, list):
        return sum(_count_properties(v) for v in node)
    if not isinstance(node, dict):
        return 0
    props = node.get("properties")
    own = len(props) if isinstance(props, dict) else 0
    return own + sum(_count_properties(v) for v in node.values())


def _as_dict(schema: dict[str, Any], key: str) -> dict[str, Any]:
    value = schema.get(key)
    return value if isinstance(value, dict) else {}


class _ExpandedSize:
    """How many JSON values a schema has once its local ``$ref``s are expanded the way ``inline_refs`` does,
    and how deep it nests — counted, never built, each definition measured once."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.memo: dict[str, tuple[int, int]] = {}  # definition name -> (values, depth)

    def of(self, node: Any, depth: int, seen: tuple[str, ...]) -> tuple[int, int]:
        """(values, depth) of ``node`` expanded; raises InputError past MAX_SCHEMA_NODES or MAX_SCHEMA_DEPTH."""
        if depth > MAX_SCHEMA_DEPTH:
            raise InputError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels once its $refs are "
                             "expanded; flatten it")
        if isinstance(node, list):
            return self._total([self.of(v, depth + 1, seen) for v in node])
        if not isinstance(node, dict):
            return 1, 0
        parts = [self.of(v, depth + 1, seen) for k, v in node.items()
                 if k not in ("$ref", "$defs", "definitions")]
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in self.defs:
            parts.append(self._definition(ref.rsplit("/", 1)[-1], depth, seen))
        return self._total(parts)

    def _definition(self, name: str, depth: int, seen: tuple[str, ...]) -> tuple[int, int]:
        if name in seen:  # recursive: inline_refs rejects it with its own message
            return 1, 0
        if len(seen) >= MAX_SCHEMA_DEPTH:
            raise InputError(f"the schema's $refs chain through over {MAX_SCHEMA_DEPTH} definitions; flatten it")
        if name not in self.memo:
            self.memo[name] = self.of(self.defs[name], depth, (*seen, name))  # depth-relative result
        values, own_depth = self.memo[name]
        if depth + own_depth > MAX_SCHEMA_DEPTH:
            raise InputError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels once its $refs are "
                             "expanded; flatten it")
        return values, own_depth

    @staticmethod
    def _total(parts: list[tuple[int, int]]) -> tuple[int, int]:
        values = 1 + sum(v for v, _ in parts)
        if values > MAX_SCHEMA_NODES:
            raise InputError(f"the schema expands to over {MAX_SCHEMA_NODES} values once its $refs are inlined "
                             "(definitions that reference each other repeatedly); give a smaller schema")
        return values, 1 + max((d for _, d in parts), default=0)


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
        max_attempts=max_attempts, max_tokens=max_tokens, pages=pages)
    fields = [ground_field(leaf, pages, backend.family, resp.mean_token_prob) for leaf in leaves]
    return Extraction(id=uuid.uuid4().hex, data=data if isinstance(data, dict) else {"value": data}, fields=fields,
                      model=resp.model, schema_hash=schema_hash(plain),
                      prompt_hash=prompts.prompt_hash(prompts.SYSTEM, prompts.EXTRACT),
                      pages_used=[PageRef(doc_id=p.doc_id, page=p.page) for p in pages], attempts=attempts,
                      created_at=datetime.now(UTC),
                      usage=Usage(prompt_tokens=resp.prompt_tokens, completion_tokens=resp.completion_tokens))


PageKey = tuple[str, int]  # (doc_id, page number)


@dataclass(frozen=True)
class Window:
    """One VLM call of a long extraction: the top-level fields it answers and the pages it shows."""

    fields: tuple[str, ...]
    pages: tuple[PageKey, ...]


def plan_windows(ranked: dict[str, list[PageKey]], arrays: set[str], *, first: PageKey, max_pages: int,
                 per_field: int, order: Callable[[PageKey], Any]) -> list[Window]:
    """The calls a long extraction makes, from each top-level field's pages as search ranked them.

    A scalar or object field reads ``per_field`` windows: the document's first page with its best-ranked pages,
    then its next-best ``max_pages``; each is a candidate, and the merge keeps the best verified one and reports
    the others that disagree. An array field (line items) reads its ``per_field * max_pages`` best pages in page
    order, ``max_pages`` at a time, so rows running over consecutive pages are read in order. Fields that read the
    same pages share a call: at most ``per_field`` calls per top-level field, whatever the document's length."""
    grouped: dict[tuple[PageKey, ...], list[str]] = {}
    for name, pages in ranked.items():
        if name in arrays:
            best = sorted(dict.fromkeys(pages[:per_field * max_pages]), key=order)
            chunks = [best[i:i + max_pages] for i in range(0, len(best), max_pages)] or [[first]]
        else:
            rest = [p for p in dict.fromkeys(pages) if p != first]
            chunks = [[first, *rest[:max_pages - 1]]]
            rest = rest[max_pages - 1:]
            while rest and len(chunks) < per_field:
                chunks.append(rest[:max_pages])
                rest = rest[max_pages:]
        for chunk in chunks:
            grouped.setdefault(tuple(sorted(chunk, key=order)), []).append(name)
    windows = [Window(tuple(names), pages) for pages, names in grouped.items()]
    return sorted(windows, key=lambda w: order(w.pages[0]))


def extract_windows(backend: VlmBackend, schema: dict[str, Any], validate: Validator,
                    windows: Sequence[tuple[Window, Callable[[], Sequence[PageInput]]]], *, max_attempts: int = 3,
                    max_tokens: int = 1024) -> Extraction:
    """Extract a top-level object schema from a long document in windows (``plan_windows``), one VLM call each,
    the pages rendered only for their call; merge the answers (``_Merge``) and validate them against the whole
    schema. Every value is verified on the pages of its own window."""
    plain = inline_refs(schema)
    props, required = plain.get("properties", {}), set(plain.get("required", []))
    merge = _Merge({n for n, sub in props.items() if is_array(sub)})
    used: dict[PageKey, PageRef] = {}
    attempts = prompt_tokens = completion_tokens = 0
    model = ""
    for rank, (window, render) in enumerate(windows):
        pages = render()
        names = list(window.fields)
        sub = {"type": "object", "properties": {n: props[n] for n in names},
               "required": [n for n in names if n in required]}
        part = extract(backend, sub, _jsonschema_validator(sub), pages, max_attempts=max_attempts,
                       max_tokens=max_tokens)
        for n in names:
            if n in part.data:
                merge.add(n, rank, part.data[n], [f for f in part.fields if _under(f.path, n)])
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
                      model=model, schema_hash=schema_hash(plain),
                      prompt_hash=prompts.prompt_hash(prompts.SYSTEM, prompts.EXTRACT),
                      pages_used=sorted(used.values(), key=lambda p: (p.doc_id, p.page)), attempts=attempts,
                      created_at=datetime.now(UTC),
                      usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))


def is_array(sub: Any) -> bool:
    """A schema node for a list: ``type: array``, or a nullable one (``["array", "null"]``, Pydantic's
    ``Optional[list[...]]`` as ``anyOf: [{type: array}, {type: null}]``)."""
    if not isinstance(sub, dict):
        return False
    kind = sub.get("type")
    if kind == "array" or (isinstance(kind, list) and "array" in kind):
        return True
    alts = _alternatives(sub)
    return any(is_array(a) for a in alts) and all(is_array(a) or a.get("type") == "null" for a in alts)


def array_items(sub: Any) -> dict[str, Any] | None:
    """The item schema a node lists: its ``items``, or those of the list in its ``anyOf``/``oneOf`` (a nullable
    list); None when it lists none."""
    if not isinstance(sub, dict):
        return None
    if isinstance(sub.get("items"), dict):
        return sub["items"]
    return next((a["items"] for a in _alternatives(sub) if isinstance(a.get("items"), dict)), None)


def _alternatives(sub: dict[str, Any]) -> list[dict[str, Any]]:
    alts = sub.get("anyOf") or sub.get("oneOf") or []
    return [a for a in alts if isinstance(a, dict)] if isinstance(alts, list) else []


def _under(path: str, name: str) -> bool:
    return path == name or path.startswith((f"{name}.", f"{name}["))


_STATUS_RANK = {"verified": 2, "approximate": 1, "unverified": 0}


def _empty_value(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


def _same(a: Any, b: Any) -> bool:
    """Two answers are the same value (case, spacing and number formatting aside)."""
    def norm(v: Any) -> str:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return f"{float(v):.6g}"
        if isinstance(v, str):
            return " ".join(v.lower().split())
        return json.dumps(v, sort_keys=True, default=str)
    return norm(a) == norm(b)


@dataclass
class _Candidate:
    rank: int  # the window's position (windows are in page order)
    value: Any
    fields: list[FieldResult]

    def score(self) -> tuple[int, int, int, float, int]:
        """Answered, then verified leaves, then approximate ones, then confidence; the earlier window on ties."""
        answered = [f for f in self.fields if not _empty_value(f.value)]
        return (0 if _empty_value(self.value) else 1,
                sum(1 for f in answered if f.status == "verified"),
                sum(1 for f in answered if f.status == "approximate"),
                sum(f.confidence for f in answered), -self.rank)


class _Merge:
    """Merges the windows' answers per top-level field. A scalar or object field takes its best candidate
    (``_Candidate.score``); a different non-empty value another window gave for the same leaf is kept on that leaf
    as an ``Alternative``. An array field concatenates its windows' items in page order; an item another window
    already gave — the same values verified at the same place (the same page and box: windows that overlap) — is
    kept once, while equal rows within one window or on different pages (the same article bought twice) all stay."""

    def __init__(self, arrays: set[str]) -> None:
        self.arrays = arrays
        self.candidates: dict[str, list[_Candidate]] = {}

    def add(self, name: str, rank: int, value: Any, fields: list[FieldResult]) -> None:
        self.candidates.setdefault(name, []).append(_Candidate(rank, value, fields))

    def result(self) -> tuple[dict[str, Any], list[FieldResult]]:
        data: dict[str, Any] = {}
        fields: list[FieldResult] = []
        for name, cands in self.candidates.items():
            lists = [c for c in cands if isinstance(c.value, list)]
            if name in self.arrays and lists:  # a window that answered null for a list has no items to add
                value, leaves = self._array(name, lists)
            else:
                value, leaves = self._scalar(cands)
            data[name] = value
            fields += leaves
        return data, fields

    @staticmethod
    def _scalar(cands: list[_Candidate]) -> tuple[Any, list[FieldResult]]:
        best = max(cands, key=_Candidate.score)
        others = sorted((c for c in cands if c is not best), key=_Candidate.score, reverse=True)
        out = []
        for leaf in best.fields:
            alts: list[Alternative] = []
            for c in others:
                for f in c.fields:
                    if f.path == leaf.path and not _empty_value(f.value) and not _same(f.value, leaf.value) \
                            and not any(_same(f.value, a.value) for a in alts):
                        alts.append(Alternative(value=f.value, boxes=f.boxes, confidence=f.confidence,
                                                status=f.status))
            out.append(leaf.model_copy(update={"alternatives": alts}) if alts else leaf)
        return best.value, out

    @staticmethod
    def _array(name: str, cands: list[_Candidate]) -> tuple[list[Any], list[FieldResult]]:
        items: list[Any] = []
        fields: list[FieldResult] = []
        seen: dict[tuple[str, tuple[Any, ...]], int] = {}  # (item, where it was verified) -> the window that gave it
        for c in sorted(cands, key=lambda c: c.rank):
            for i, item in enumerate(c.value):
                prefix = f"{name}[{i}]"
                leaves = [f for f in c.fields if _under(f.path, prefix)]
                where = tuple(sorted((b.doc_id, b.page, tuple(b.bbox.as_list()) if b.bbox else ())
                                     for f in leaves if f.status == "verified" for b in f.boxes[:1]))
                key = (json.dumps(item, sort_keys=True, default=str), where)
                if where and seen.get(key, c.rank) != c.rank:
                    continue  # the same printed row, read again by another window that saw the same page
                seen[key] = c.rank
                new = f"{name}[{len(items)}]"
                items.append(item)
                fields += [f.model_copy(update={"path": new + f.path[len(prefix):]}) for f in leaves]
        return items, fields


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
                           note=note)
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
                           confidence=0.0, status="unverified",
                           note=f"{str(leaf.value)[:60]!r} is not on the pages read: a likely hallucination")
    boxes = [FieldBox(doc_id=page.doc_id, page=page.page, bbox=b) for b in loc.boxes or [loc.bbox]]
    boxes += [FieldBox(doc_id=p.doc_id, page=p.page, bbox=lc.bbox) for _, p, lc in results
              if p is not page and lc.status == "verified"][:4]
    candidates = [Candidate(bbox=c.bbox, boxes=list(c.boxes), matched_text=c.matched_text, doc_id=page.doc_id,
                            page=page.page) for c in loc.candidates]
    several = "printed in several places as well: every one is in candidates" if candidates else None
    return FieldResult(path=leaf.path, value=leaf.value, boxes=boxes, confidence=round(conf, 4), status=status,
                       matched_text=matched, candidates=candidates, note=several)
