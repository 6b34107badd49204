"""Schema-constrained output: bounding schemas so constrained decoding always terminates, wrapping a user's
schema so every leaf comes back with its page and box, and the re-ask loop (a validation failure goes back to
the model with the error, a bounded number of times; the final error carries the attempts and the raw output).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from schemas.errors import InputError, ModelBehaviorError
from vlm.backend import Message, VlmBackend, VlmRequest, VlmResponse

T = TypeVar("T")
MAX_STRING = 300
# No control characters, quotes or backslashes inside generated strings: xgrammar lets raw control characters and
# lone surrogate escapes through otherwise (shared/recipes/xgrammar_string_repro.py), and JSON then fails to parse.
# xgrammar ignores maxLength next to a pattern, so the bound goes into the pattern; it also fails to compile a
# counted repetition above ~128, so long bounds are written as repeated chunks of at most 100.
_SAFE_CHAR = r'[^\x00-\x1f"\\]'


def safe_text_pattern(limit: int) -> str:
    """A regex for printable JSON-safe text of at most ``limit`` characters (rounded up to a chunk of 100)."""
    if limit <= 100:
        return f"^{_SAFE_CHAR}{{0,{limit}}}$"
    return f"^(?:{_SAFE_CHAR}{{0,100}}){{0,{-(-limit // 100)}}}$"
MAX_ITEMS = 40
LEAF_TYPES = {"string", "number", "integer", "boolean", "null"}


def schema_hash(schema: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:16]


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve local ``$ref``s (``#/$defs/X``, ``#/definitions/X``) in place. Raises InputError on a recursive
    schema (it has no finite grammar) or a remote ref."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                ref = node["$ref"]
                name = ref.rsplit("/", 1)[-1]
                if not ref.startswith("#/") or name not in defs:
                    raise InputError(f"schema reference {ref} cannot be resolved; inline it or use #/$defs/...")
                if name in seen:
                    raise InputError(f"schema is recursive through '{name}'; give a schema with finite depth")
                merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
                return walk(merged, (*seen, name))
            return {k: walk(v, seen) for k, v in node.items() if k not in ("$defs", "definitions")}
        if isinstance(node, list):
            return [walk(v, seen) for v in node]
        return node

    return walk(copy.deepcopy(schema), ())


def is_leaf(s: dict[str, Any]) -> bool:
    if "enum" in s or "const" in s:
        return True
    t = s.get("type")
    if isinstance(t, str):
        return t in LEAF_TYPES
    if isinstance(t, list):
        return all(x in LEAF_TYPES for x in t)
    for key in ("anyOf", "oneOf"):
        if key in s:
            return all(is_leaf(x) for x in s[key])
    return False


def bounded(schema: dict[str, Any], max_string: int = MAX_STRING, max_items: int = MAX_ITEMS) -> dict[str, Any]:
    """A copy where every string has ``maxLength`` and every array ``maxItems`` (kept when already tighter), and
    objects allow no extra properties — a finite grammar, so constrained decoding ends."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        t = out.get("type")
        types: list[Any] = t if isinstance(t, list) else [t]
        if "string" in types and "enum" not in out and "const" not in out:
            limit = min(int(out.get("maxLength", max_string)), max_string)
            if "pattern" not in out and "format" not in out:
                out["pattern"] = safe_text_pattern(limit)
                out.pop("maxLength", None)
            else:
                out["maxLength"] = limit
        if "array" in types:
            out["maxItems"] = min(int(out.get("maxItems", max_items)), max_items)
        if "object" in types and "properties" in out:
            out["additionalProperties"] = False
            out.setdefault("required", list(out["properties"]))
        return out

    return walk(schema)


def grounded(schema: dict[str, Any], n_pages: int, max_coord: int) -> dict[str, Any]:
    """Wrap every leaf of ``schema`` as ``{"value": <leaf>, "page": 1..n_pages, "bbox_2d": [4 ints] | null}``."""
    box = {"anyOf": [{"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": max_coord},
                      "minItems": 4, "maxItems": 4}, {"type": "null"}]}
    page = {"type": "integer", "minimum": 1, "maximum": max(1, n_pages)}

    def walk(s: dict[str, Any]) -> dict[str, Any]:
        if is_leaf(s):
            return {"type": "object", "properties": {"value": s, "page": page, "bbox_2d": box},
                    "required": ["value", "page", "bbox_2d"], "additionalProperties": False}
        t = s.get("type")
        if t == "object" or "properties" in s:
            props = {k: walk(v) for k, v in s.get("properties", {}).items()}
            if not props:
                raise InputError("an object in the schema has no properties; list the fields to extract")
            return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
        if t == "array":
            if "items" not in s or not isinstance(s["items"], dict):
                raise InputError("an array in the schema has no 'items' schema; say what each item is")
            out = {"type": "array", "items": walk(s["items"])}
            for k in ("minItems", "maxItems"):
                if k in s:
                    out[k] = s[k]
            return out
        raise InputError(f"unsupported schema node {json.dumps(s)[:120]}; use objects, arrays and "
                         "string/number/integer/boolean leaves")

    return walk(schema)


@dataclass(frozen=True)
class Leaf:
    path: str
    value: Any
    page: int | None
    box: list[float] | None


def ungrounded(data: Any, schema: dict[str, Any], path: str = "") -> tuple[Any, list[Leaf]]:
    """Inverse of ``grounded`` on model output: the plain value tree and its leaves with page and box."""
    if is_leaf(schema):
        if not isinstance(data, dict) or "value" not in data:
            return data, [Leaf(path or "$", data, None, None)]
        page = data.get("page") if isinstance(data.get("page"), int) else None
        box = data.get("bbox_2d") if isinstance(data.get("bbox_2d"), list) else None
        return data["value"], [Leaf(path or "$", data["value"], page, box)]
    if isinstance(data, dict) and ("properties" in schema or schema.get("type") == "object"):
        out, leaves = {}, []
        for k, sub in schema.get("properties", {}).items():
            if k in data:
                out[k], lv = ungrounded(data[k], sub, f"{path}.{k}" if path else k)
                leaves += lv
        return out, leaves
    if isinstance(data, list) and schema.get("type") == "array":
        items, leaves = [], []
        for i, item in enumerate(data):
            v, lv = ungrounded(item, schema.get("items", {}), f"{path}[{i}]")
            items.append(v)
            leaves += lv
        return items, leaves
    return data, []


def generate_validated(backend: VlmBackend, messages: Sequence[Message], schema: dict[str, Any],
                       validate: Callable[[Any], T], *, max_attempts: int,
                       max_tokens: int, pages: Sequence[Any] = ()) -> tuple[T, VlmResponse, int]:
    """Generate JSON under ``schema`` and ``validate`` it (raises ValueError-like on failure). On failure the
    output and the error go back to the model, up to ``max_attempts`` tries. Raises ModelBehaviorError with the
    last raw output."""
    convo = list(messages)
    decode_schema = bounded(inline_refs(schema))
    last_text, last_err = "", ""
    for attempt in range(1, max_attempts + 1):
        resp = backend.generate(VlmRequest(messages=convo, json_schema=decode_schema, max_tokens=max_tokens,
                                           pages=pages))
        last_text = resp.text
        try:
            return validate(json.loads(resp.text)), resp, attempt
        except (ValueError, TypeError, KeyError) as e:  # JSONDecodeError and pydantic/jsonschema errors included
            last_err = describe_invalid(e)
            convo = [*convo, Message("assistant", [resp.text[:4000]]),
                     Message("user", [f"That reply is not valid: {last_err}. Reply again with only JSON that "
                                      "matches the schema."])]
    shown = last_text[:300] + ("…" if len(last_text) > 300 else "")
    raise ModelBehaviorError(f"the model did not produce valid output in {max_attempts} attempts (last error: "
                             f"{last_err}; its last output: {shown!r})", raw_output=last_text, attempts=max_attempts)


def describe_invalid(e: Exception) -> str:
    """What was wrong with an output, in one line: for a Pydantic error each field and why (``evidence.0.quote:
    String should have at most 200 characters``), not just "1 validation error"."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        parts = [f"{'.'.join(str(x) for x in err.get('loc', ())) or 'output'}: {err.get('msg', '')}"
                 for err in e.errors()[:3]]
        return "; ".join(parts)[:500]
    return str(e).splitlines()[0][:500] if str(e) else e.__class__.__name__
