"""Headings at ingest: the PDF outline's titles and larger-font lines are stored with their pages and make a
question that is a section title find the page the section starts on."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from app.service import Service
from tests.conftest import make_settings

BODY = ("Measuring where a program spends its time is done by sampling the call stack at intervals and counting "
        "the functions found there. ")


def _manual(path: Path) -> Path:
    """Six pages of body text that mention profiling everywhere; the Profiling section starts on page 4, with a
    bookmark and a 16 pt title over 10 pt text."""
    doc = pymupdf.open()
    for n in range(1, 7):
        page = doc.new_page()
        y = 72
        if n == 4:
            page.insert_text((72, y), "13.6 Profiling", fontsize=16)
            y += 30
        text = BODY * 3 + ("profiling profiling tools and profiling output. " if n != 4 else "")
        page.insert_textbox(pymupdf.Rect(72, y, 540, 700), text, fontsize=10)
    doc.set_toc([[1, "Introduction", 1], [1, "Profiling", 4], [2, "Sampling", 5]])
    doc.save(str(path))
    return path


@pytest.mark.parametrize("outline", [True, False])
def test_headings_are_stored_and_find_their_section(tmp_path: Path, outline: bool) -> None:
    pdf = _manual(tmp_path / "manual.pdf")
    svc = Service(make_settings(tmp_path / "data", None, outline_headings=outline))
    try:
        f = svc.ingest([pdf]).files[0]
        assert f.status == "ingested"
        heads = {r.page.page_no: r.page.headings for r in svc.catalog.iter_pages(f.doc_id)}
        assert heads[4] == (["Profiling", "13.6 Profiling"] if outline else ["13.6 Profiling"])
        assert heads[1] == (["Introduction"] if outline else [])
        assert heads[5] == (["Sampling"] if outline else [])
        assert heads[2] == heads[3] == heads[6] == []
        assert svc.search("Profiling", k=3)[0].page == 4
        assert svc.search("13.6 Profiling", k=3)[0].page == 4
    finally:
        svc.close()
