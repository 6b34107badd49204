"""Built-in extraction schemas, and building a JSON Schema from a simple field table (name, type, description)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.errors import InputError

_MONEY = {"type": "number", "minimum": -1e9, "maximum": 1e9}

PRESETS: dict[str, dict[str, Any]] = {
    "Invoice": {"type": "object", "properties": {
        "invoice_number": {"type": "string", "maxLength": 60},
        "invoice_date": {"type": "string", "maxLength": 40},
        "seller": {"type": "string", "maxLength": 120},
        "buyer": {"type": "string", "maxLength": 120},
        "currency": {"type": "string", "maxLength": 8},
        "line_items": {"type": "array", "maxItems": 30, "items": {"type": "object", "properties": {
            "description": {"type": "string", "maxLength": 160}, "quantity": _MONEY, "unit_price": _MONEY,
            "amount": _MONEY}, "required": ["description", "amount"]}},
        "subtotal": _MONEY, "tax": _MONEY, "total": _MONEY},
        "required": ["invoice_number", "total"]},
    "Receipt": {"type": "object", "properties": {
        "merchant": {"type": "string", "maxLength": 120},
        "date": {"type": "string", "maxLength": 40},
        "items": {"type": "array", "maxItems": 40, "items": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 120}, "price": _MONEY}, "required": ["name", "price"]}},
        "total": _MONEY, "payment_method": {"type": "string", "maxLength": 40}},
        "required": ["merchant", "total"]},
    "Form key/values": {"type": "object", "properties": {
        "fields": {"type": "array", "maxItems": 60, "items": {"type": "object", "properties": {
            "key": {"type": "string", "maxLength": 120}, "value": {"type": "string", "maxLength": 300}},
            "required": ["key", "value"]}}},
        "required": ["fields"]},
}

FIELD_TYPES: dict[str, dict[str, Any]] = {"text": {"type": "string", "maxLength": 300}, "number": {"type": "number"},
               "integer": {"type": "integer"}, "date": {"type": "string", "maxLength": 40},
               "yes/no": {"type": "boolean"}, "list of text": {"type": "array", "maxItems": 30,
                                                               "items": {"type": "string", "maxLength": 200}}}


def schema_from_fields(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``[{"name", "type", "description"}]`` (type one of FIELD_TYPES) → a JSON Schema object. Raises InputError."""
    props: dict[str, Any] = {}
    for i, row in enumerate(rows, 1):
        name = str(row.get("name") or "").strip()
        if not name:
            continue
        if not name.replace("_", "").isalnum():
            raise InputError(f"field {i}: '{name}' — use letters, digits and underscores in field names")
        kind = str(row.get("type") or "text")
        if kind not in FIELD_TYPES:
            raise InputError(f"field '{name}': type must be one of {', '.join(FIELD_TYPES)}")
        props[name] = {**FIELD_TYPES[kind]}
        if row.get("description"):
            props[name]["description"] = str(row["description"])
    if not props:
        raise InputError("add at least one field (a name and a type)")
    return {"type": "object", "properties": props, "required": list(props)}
