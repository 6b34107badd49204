"""Extraction of documents longer than the page budget: each field reads the pages search ranks highest for it."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from app.service import Service
from schemas.errors import InputError
from tests.conftest import make_settings

TOPICS = ["delivery schedule", "warranty terms", "payment method", "shipping address", "liability clause",
          "support contacts", "returns policy", "data protection"]


# line items running over pages 40-41: (page, description, quantity, amount)
ITEMS = [(40, "Steel bolts M8", 200, 46.0), (40, "Hex nuts M8", 200, 18.5), (40, "Washers 8 mm", 400, 12.0),
         (41, "Anchor plates", 12, 310.8), (41, "Hex nuts M8", 200, 18.5)]  # the same article twice: both stay


def _table(page: pymupdf.Page, rows: list[tuple[int, str, int, float]], top: float) -> None:
    page.insert_text((72, top), "Description", fontsize=10)
    page.insert_text((360, top), "Qty", fontsize=10)
    page.insert_text((460, top), "Amount", fontsize=10)
    for k, (_, desc, qty, amount) in enumerate(rows, 1):
        y = top + 16 * k
        page.insert_text((72, y), desc, fontsize=10)
        page.insert_text((360, y), str(qty), fontsize=10)
        page.insert_text((460, y), f"{amount:,.2f}", fontsize=10)


def _contract(path: Path, pages: int = 300, revised_total: bool = False) -> Path:
    doc = pymupdf.open()
    for n in range(1, pages + 1):
        page = doc.new_page()
        topic = TOPICS[n % len(TOPICS)]
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 400), f"Section {n}. This page describes the {topic} "
                            f"agreed between the parties, clause {n}.{n % 7}.", fontsize=11)
        if n == 217:
            page.insert_text((72, 500), "Invoice number: 4711", fontsize=11)
        if n == 3:
            page.insert_text((72, 500), "Total due: 1,234.56", fontsize=11)
        if n == 250 and revised_total:
            page.insert_text((72, 500), "Revised total due: 1,300.00", fontsize=11)
        if n in (40, 41):
            _table(page, [r for r in ITEMS if r[0] == n], top=430)
        if n == 41:
            page.insert_text((72, 560), f"Subtotal {sum(r[3] for r in ITEMS):,.2f}", fontsize=10)
    doc.save(str(path))
    return path


LINE_ITEMS = {"type": "array", "description": "the invoice's line items",
              "items": {"type": "object", "properties": {"description": {"type": "string"},
                                                         "quantity": {"type": "integer"},
                                                         "amount": {"type": "number"}},
                        "required": ["description", "quantity", "amount"]}}


def test_a_300_page_document_is_extracted_field_by_field(tmp_path: Path) -> None:
    svc = Service(make_settings(tmp_path / "data", None, vlm_backend="words"))
    try:
        svc.ingest([_contract(tmp_path / "contract.pdf")])
        schema = {"type": "object", "properties": {"invoice_number": {"type": "string"},
                                                   "total": {"type": "number", "description": "total due"},
                                                   "line_items": LINE_ITEMS},
                  "required": ["invoice_number", "total", "line_items"]}
        ex = svc.extract(schema, ["contract.pdf"], max_pages=8)
        with pytest.raises(InputError, match="names no fields"):  # nothing to look for page by page
            svc.extract({"type": "object", "additionalProperties": {"type": "string"}}, ["contract.pdf"])
    finally:
        svc.close()
    assert ex.data["invoice_number"] == "4711" and ex.data["total"] == 1234.56
    # the rows of both pages, in page order, the repeated article kept (it is on another page)
    assert ex.data["line_items"] == [{"description": d, "quantity": q, "amount": a} for _, d, q, a in ITEMS]
    by = {f.path: f for f in ex.fields}
    assert by["invoice_number"].status == "verified" and by["invoice_number"].boxes[0].page == 217
    assert by["total"].status == "verified" and by["total"].boxes[0].page == 3
    for i, (page, *_rest) in enumerate(ITEMS):
        for leaf in ("description", "quantity", "amount"):
            f = by[f"line_items[{i}].{leaf}"]
            assert f.status == "verified" and f.boxes[0].page == page, (i, leaf, f)
    assert not ex.conflicts
    assert ex.attempts <= 3 * 2, "at most windows_per_field (2) VLM calls per top-level field"
    assert len(ex.pages_used) <= 3 * 2 * 8 and {p.page for p in ex.pages_used} >= {1, 3, 40, 41, 217}


def test_windows_that_disagree_are_reported_not_dropped(tmp_path: Path) -> None:
    """A revised total on page 250 and the first one on page 3: one wins (verified), the other is reported."""
    svc = Service(make_settings(tmp_path / "data", None, vlm_backend="words"))
    try:
        svc.ingest([_contract(tmp_path / "contract.pdf", pages=60 * 5, revised_total=True)])
        ex = svc.extract({"type": "object", "properties": {"total": {"type": "number", "description": "total due"}}},
                         ["contract.pdf"], max_pages=2)  # one ranked page per window beside page 1
    finally:
        svc.close()
    (total,) = ex.fields
    assert total.status == "verified"
    assert {total.value, *(a.value for a in total.alternatives)} == {1234.56, 1300.0}
    (alt,) = total.alternatives
    assert alt.status == "verified" and alt.boxes[0].page == (250 if total.value == 1234.56 else 3)
    assert ex.conflicts == [total]
