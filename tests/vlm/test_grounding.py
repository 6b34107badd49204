"""The verifier on real pages: born-digital text layers and OCR'd scans from ../shared/corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import pytest

from ingest.pdf import text_words
from schemas.coords import BBox, union
from schemas.wordtable import WordTable
from tests.conftest import PDFS
from vlm.grounding import canonical, locate, parse_date

pytestmark = pytest.mark.corpus


def _page(name: str, page_no: int) -> WordTable:
    return text_words(pymupdf.open(PDFS / name)[page_no - 1])


def _truth(table: WordTable, start: int, n: int) -> BBox:
    return union(BBox.of(b) for b in table.boxes[start:start + n].tolist())


def _find_run(table: WordTable, min_len: int = 4) -> int:
    """Index of a word that is alphabetic, long, and unique on the page (so the truth is unambiguous)."""
    counts: dict[str, int] = {}
    for t in table.texts:
        counts[canonical(t)] = counts.get(canonical(t), 0) + 1
    for i, t in enumerate(table.texts[:-3]):
        if t.isalpha() and len(t) >= min_len and counts[canonical(t)] == 1:
            return i
    raise AssertionError("no unique word on the page")


@pytest.mark.parametrize(("name", "page_no"), [("R-data.pdf", 5), ("R-intro.pdf", 20), ("refcard-a4.pdf", 2)])
def test_known_phrases_snap_to_their_words(name: str, page_no: int) -> None:
    table = _page(name, page_no)
    i = _find_run(table)
    for n in (1, 2, 3):
        phrase = " ".join(table.texts[i:i + n])
        loc = locate(phrase, table)
        assert loc.status == "verified", phrase
        assert loc.bbox is not None and loc.bbox.iou(_truth(table, i, n)) >= 0.9
        # a sloppy model box nearby still snaps to the words
        t = _truth(table, i, n)
        near = BBox.clamped(t.x0 - 0.03, t.y0 - 0.01, t.x1 + 0.05, t.y1 + 0.02)
        snapped = locate(phrase.upper(), table, near)
        assert snapped.status == "verified" and snapped.bbox is not None and snapped.bbox.iou(t) >= 0.9
        assert snapped.confidence > 0.9


def test_absent_values_are_unverified() -> None:
    table = _page("R-data.pdf", 5)
    near = BBox.of([0.1, 0.1, 0.3, 0.15])
    for value in ("Invoice total 4,800.00 EUR", "zebra helicopter", 918273.5, "2031-02-29"):
        loc = locate(value, table, near)
        assert loc.status == "unverified" and loc.confidence == 0.0 and loc.bbox == near


def test_found_elsewhere_is_approximate_and_fuzzy_is_approximate() -> None:
    table = _page("R-data.pdf", 5)
    i = _find_run(table, 7)
    word = table.texts[i]
    t = _truth(table, i, 1)
    far = BBox.clamped(1 - t.x1, 1 - t.y1, 1 - t.x0, 1 - t.y0)  # the mirrored spot
    if far is not None and far.iou(t) == 0:
        loc = locate(word, table, far)
        assert loc.status == "approximate" and loc.bbox is not None and loc.bbox.iou(t) >= 0.9
    typo = word[:-2] + ("x" if word[-2] != "x" else "y") + word[-1]
    fuzzy = locate(typo, table)
    assert fuzzy.status == "approximate" and fuzzy.bbox is not None and fuzzy.bbox.iou(t) >= 0.9
    assert 0 < fuzzy.confidence < 1


def test_normalisation_numbers_currency_dates_hyphenation() -> None:
    texts = ["Total", "due:", "€4.800,00", "on", "30", "November", "2026.", "The", "infor-", "mation", "desk",
             "(USD", "1,234.50)"]
    boxes = np.array([[0.05 * i, 0.5, 0.05 * i + 0.04, 0.52] for i in range(len(texts))], np.float32)
    table = WordTable(texts, boxes, np.ones(len(texts), np.float32), "text_layer")
    cases = {"4800": [2], "4,800.00 EUR": [2], "EUR 4800.00": [2], "2026-11-30": [4, 5, 6], "30/11/2026": [4, 5, 6],
             "information": [8, 9], "Information desk": [8, 9, 10], "$1234.5": [12], "total due": [0, 1]}
    for value, idx in cases.items():
        loc = locate(value, table)
        assert loc.status == "verified", value
        assert loc.word_indices == tuple(idx), (value, loc.word_indices)
    assert locate(4800, table).word_indices == (2,)
    assert locate(4800.0, table).word_indices == (2,)
    assert parse_date("30 November 2026") == parse_date("2026-11-30") and parse_date("12345") is None


def test_ocr_page_values_are_verified_with_ocr_confidence(tmp_path: Path) -> None:
    from ingest.ocr import ocr_words
    from ingest.pdf import render

    page = pymupdf.open(PDFS / "R-data.pdf")[4]
    table = ocr_words(render(page, 144, 4_000_000))
    layer = text_words(page)
    i = _find_run(layer, 8)
    word = layer.texts[i]
    loc = locate(word, table)
    assert loc.status in ("verified", "approximate"), word
    assert loc.bbox is not None and abs(loc.bbox.center()[1] - _truth(layer, i, 1).center()[1]) < 0.01
    assert loc.confidence < 1.0 or table.conf.min() == 1.0
