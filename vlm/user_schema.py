"""A user's extraction schema: read from a dict, a ``.json`` file or a Pydantic model, bounded before anything
expands it, turned into a validator of plain data; the shape questions the rest of extraction asks of it (is a
node a list, what does it list) and the search question for one of its fields."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.errors import InputError

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
    return given, jsonschema_validator(given)


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


def jsonschema_validator(schema: dict[str, Any]) -> Validator:
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


def field_question(name: str, sub: dict[str, Any]) -> str:
    """The search question for one top-level field of a schema: its name in words, title and description, and
    for a list of objects its item fields' names (a line-item table's header words)."""
    def words(key: str) -> str:
        return key.replace("_", " ").replace("-", " ")

    parts = [words(name), str(sub.get("title") or ""), str(sub.get("description") or "")]
    items = array_items(sub)
    parts += [words(k) for k in (items.get("properties") or {})] if items is not None else []
    enum = sub.get("enum")
    parts += [str(e) for e in enum[:10]] if isinstance(enum, list) else []
    return " ".join(p for p in parts if p)


def leaf_kinds(schema: dict[str, Any]) -> dict[str, str]:
    """Each leaf's type, by its path across list items (``items[].price`` → ``number``): the JSON type, or the
    string's ``format`` (``date``, ``date-time``) where it has one. ``schema`` has its $refs inlined."""
    out: dict[str, str] = {}

    def walk(node: Any, path: str, depth: int) -> None:
        if not isinstance(node, dict) or depth > 64:
            return
        alts = [a for a in _alternatives(node) if a.get("type") != "null"]
        if alts and "type" not in node:
            walk(alts[0], path, depth + 1)
            return
        kinds = node.get("type")
        kind = next((k for k in kinds if k != "null"), None) if isinstance(kinds, list) else kinds
        if kind == "object" or "properties" in node:
            for name, sub in (node.get("properties") or {}).items():
                walk(sub, f"{path}.{name}" if path else name, depth + 1)
        elif kind == "array" or "items" in node:
            walk(array_items(node), f"{path}[]", depth + 1)
        elif path:
            out[path] = str(node.get("format") or kind or "string") if kind in (None, "string") else str(kind)

    walk(schema, "", 0)
    return out
