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


def _contract(path: Path, pages: int = 300) -> Path:
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
    doc.save(str(path))
    return path


def test_a_300_page_document_is_extracted_field_by_field(tmp_path: Path) -> None:
    svc = Service(make_settings(tmp_path / "data", None, vlm_backend="words"))
    try:
        svc.ingest([_contract(tmp_path / "contract.pdf")])
        schema = {"type": "object", "properties": {"invoice_number": {"type": "string"},
                                                   "total": {"type": "number", "description": "total due"}},
                  "required": ["invoice_number", "total"]}
        ex = svc.extract(schema, ["contract.pdf"], max_pages=8)
        with pytest.raises(InputError, match="names no fields"):  # nothing to look for page by page
            svc.extract({"type": "object", "additionalProperties": {"type": "string"}}, ["contract.pdf"])
    finally:
        svc.close()
    assert ex.data == {"invoice_number": "4711", "total": 1234.56}
    by = {f.path: f for f in ex.fields}
    assert by["invoice_number"].status == "verified" and by["invoice_number"].boxes[0].page == 217
    assert by["total"].status == "verified" and by["total"].boxes[0].page == 3
    assert ex.attempts <= 2, "at most one VLM call per top-level field"
    assert len(ex.pages_used) <= 16 and {p.page for p in ex.pages_used} >= {1, 3, 217}
