"""Schemas: loading the user's (dict, .json, module:Class), bounding, grounding every leaf, and back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from schemas.errors import InputError
from vlm.structured import bounded, grounded, inline_refs, safe_text_pattern, ungrounded
from vlm.user_schema import load_schema


class LineItem(BaseModel):
    description: str
    amount: float


class Invoice(BaseModel):
    number: str = Field(max_length=20)
    items: list[LineItem]


def test_load_schema_from_model_class_module_path_and_file(tmp_path: Path) -> None:
    for spec in (Invoice, "tests.vlm.test_structured:Invoice"):
        schema, validate = load_schema(spec)  # type: ignore[arg-type]
        assert "$defs" in schema
        assert validate({"number": "A1", "items": [{"description": "x", "amount": "2.5"}]})["items"][0]["amount"] == 2.5
        with pytest.raises(ValueError):
            validate({"number": "A1" * 20, "items": []})
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}))
    schema, validate = load_schema(str(f))
    assert validate({"total": 3}) == {"total": 3}
    with pytest.raises(ValueError, match="required"):
        validate({})
    for bad, msg in [("tests.vlm.test_structured:Nope", "cannot import"), (str(tmp_path / "no.json"), "does not exist"),
                     ("json:dumps", "not a Pydantic model"), ({"type": "object", "properties": {"x": {"type": 5}}},
                                                               "invalid JSON Schema")]:
        with pytest.raises(InputError, match=msg):
            load_schema(bad)  # type: ignore[arg-type]


def test_recursive_and_unresolvable_refs_are_rejected() -> None:
    rec = {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}},
           "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}}}
    with pytest.raises(InputError, match="recursive"):
        inline_refs(rec)
    with pytest.raises(InputError, match="cannot be resolved"):
        inline_refs({"properties": {"x": {"$ref": "http://example.com/s.json"}}})


def test_bounded_and_grounded_round_trip() -> None:
    plain = inline_refs(Invoice.model_json_schema())
    b = bounded(plain)
    number = b["properties"]["number"]
    assert re.fullmatch(number["pattern"], "INV-7") and not re.fullmatch(number["pattern"], "x" * 21)
    assert not re.fullmatch(number["pattern"], 'bad "quote"') and not re.fullmatch(number["pattern"], "a\x01")
    assert b["properties"]["items"]["maxItems"] == 40 and b["additionalProperties"] is False
    assert re.fullmatch(safe_text_pattern(250), "y" * 250) and not re.fullmatch(safe_text_pattern(250), "y" * 301)
    g = grounded(b, n_pages=3, max_coord=1000)
    leaf = g["properties"]["items"]["items"]["properties"]["amount"]
    assert leaf["required"] == ["value", "page", "bbox_2d"] and leaf["properties"]["page"]["maximum"] == 3
    out = {"number": {"value": "INV-7", "page": 1, "bbox_2d": [1, 2, 3, 4]},
           "items": [{"description": {"value": "pens", "page": 2, "bbox_2d": None},
                      "amount": {"value": 4.5, "page": 2, "bbox_2d": [5, 6, 7, 8]}}]}
    data, leaves = ungrounded(out, plain)
    assert data == {"number": "INV-7", "items": [{"description": "pens", "amount": 4.5}]}
    assert [(lf.path, lf.page, lf.box) for lf in leaves] == [("number", 1, [1, 2, 3, 4]),
                                                           ("items[0].description", 2, None),
                                                           ("items[0].amount", 2, [5, 6, 7, 8])]
    with pytest.raises(InputError, match="no 'items'"):
        grounded({"type": "object", "properties": {"xs": {"type": "array"}}}, 1, 1000)
