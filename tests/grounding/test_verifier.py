"""The verifier: character alignment across words and lines, on born-digital text layers, real OCR'd receipts
(../shared/corpus/receipts) and hand-made pages for the edge cases."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pymupdf
import pytest

from grounding.normalise import normalise, parse_dates
from grounding.verifier import locate
from ingest.pdf import text_words
from schemas.coords import BBox, union
from schemas.wordtable import WordTable
from tests.conftest import CORPUS, PDFS
from tests.grounding.spans import draw_span, sloppy, span_box

RECEIPTS = CORPUS / "receipts"


def _page(name: str, page_no: int) -> WordTable:
    return text_words(pymupdf.open(PDFS / name)[page_no - 1])


def _table(rows: list[list[str]], source: str = "text_layer", x_step: float = 0.09) -> WordTable:
    """A page with the given lines of words, each word 0.08 wide, lines 0.03 apart."""
    texts, boxes, lines = [], [], []
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            texts.append(t)
            boxes.append([0.02 + c * x_step, 0.1 + r * 0.03, 0.02 + c * x_step + 0.08, 0.12 + r * 0.03])
            lines.append(r)
    return WordTable(texts, np.array(boxes, np.float32), np.full(len(texts), 0.9, np.float32),
                     source, np.array(lines, np.int32))  # type: ignore[arg-type]


@pytest.mark.corpus
def test_random_spans_of_corpus_pdfs_snap_to_their_words() -> None:
    rng = np.random.default_rng(3)
    tables = [t for name in ("R-data.pdf", "R-intro.pdf", "refcard-a4.pdf")
              for t in (_page(name, p) for p in (2, 3)) if len(t) > 20]
    tried = 0
    while tried < 60:
        t = tables[rng.integers(len(tables))]
        span = draw_span(t, rng)
        if span is None:
            continue
        i, n, value = span
        tried += 1
        truth = span_box(t, i, n)
        loc = locate(value, t, sloppy(truth))
        assert loc.status == "verified", value
        assert loc.bbox is not None and loc.bbox.iou(truth) >= 0.9, (value, loc.matched_text)
        # one box per printed line the span covers
        assert len(loc.boxes) == len(set(t.lines[i:i + n].tolist()))


@pytest.mark.corpus
def test_absent_values_are_unverified() -> None:
    table = _page("R-data.pdf", 5)
    near = BBox.of([0.1, 0.1, 0.3, 0.15])
    for value in ("Invoice total 4,800.00 EUR", "zebra helicopter", 918273.5, "2031-02-29",
                  "the import of spreadsheets"):
        loc = locate(value, table, near)
        assert loc.status == "unverified" and loc.confidence == 0.0 and loc.bbox == near, value
        assert loc.note == "not on the page"


@pytest.mark.corpus
def test_found_elsewhere_and_typos_are_approximate() -> None:
    table = _page("R-data.pdf", 5)
    i = next(i for i, t in enumerate(table.texts) if t.isalpha() and len(t) >= 9
             and sum(normalise(u) == normalise(t) for u in table.texts) == 1)
    word, t = table.texts[i], span_box(table, i, 1)
    far = BBox.clamped(1 - t.x1, 1 - t.y1, 1 - t.x0, 1 - t.y0)
    assert far is not None and far.iou(t) == 0
    loc = locate(word, table, far)
    assert loc.status == "approximate" and loc.bbox is not None and loc.bbox.iou(t) >= 0.9
    typo = word[:-2] + ("x" if word[-2] != "x" else "y") + word[-1]
    fuzzy = locate(typo, table)
    assert fuzzy.status == "approximate" and fuzzy.bbox is not None and fuzzy.bbox.iou(t) >= 0.9
    assert 0 < fuzzy.confidence < 1


def test_normalisation_numbers_currency_dates_hyphenation() -> None:
    table = _table([["Total", "due:", "€4.800,00", "on", "30", "November", "2026."],
                    ["The", "infor-"], ["mation", "desk", "(USD", "1,234.50)"]])
    cases = {"4800": [2], "4,800.00 EUR": [2], "EUR 4800.00": [2], "2026-11-30": [4, 5, 6], "30/11/2026": [4, 5, 6],
             "information": [8, 9], "Information desk": [8, 9, 10], "$1234.5": [12], "total due": [0, 1],
             4800: [2]}
    for value, idx in [*cases.items(), (4800.0, [2])]:
        loc = locate(value, table)
        assert loc.status == "verified", value
        assert loc.word_indices == tuple(idx), (value, loc.word_indices)
    for value in ("48", "4.8", "800", "30 November 2025", "informations"):  # parts or near misses of numbers/dates
        assert locate(value, table).status != "verified", value
    assert parse_dates("30 November 2026") == parse_dates("2026-11-30") == {datetime.date(2026, 11, 30)}
    assert parse_dates("12345") == set()


def test_sub_word_span_of_a_text_layer_word_gets_its_own_box() -> None:
    table = _table([["Total:$1,234.56", "paid"]])
    loc = locate("1,234.56", table)
    word = table.boxes[0]
    assert loc.status == "verified" and loc.matched_text == "1,234.56" and loc.bbox is not None
    # "Total:$" is 7 of 15 characters: the box starts 7/15 of the way in and ends with the word
    assert loc.bbox.x0 == pytest.approx(word[0] + 0.08 * 7 / 15, abs=1e-3)
    assert loc.bbox.x1 == pytest.approx(word[2], abs=1e-6)
    assert locate("Total", table).bbox.x1 < loc.bbox.x0  # type: ignore[union-attr]


def test_value_over_several_lines_gets_one_box_per_line() -> None:
    table = _table([["ACME", "SDN", "BHD"], ["LOT", "1851-A,", "JALAN"], ["KPB", "6,", "KAWASAN"],
                    ["43300", "SERI", "KEMBANGAN"], ["TOTAL", "33.90"]])
    loc = locate("LOT 1851-A, JALAN KPB 6, KAWASAN 43300 SERI KEMBANGAN", table)
    assert loc.status == "verified" and len(loc.boxes) == 3
    for box, row in zip(loc.boxes, (1, 2, 3), strict=True):
        assert box.y0 == pytest.approx(0.1 + row * 0.03, abs=1e-6)
    assert loc.bbox == union(loc.boxes)


def test_glued_ocr_words_and_ocr_confusions() -> None:
    # what RapidOCR gives when it drops spaces: the value sits inside glued tokens
    table = _table([["MRD.I.Y.(JOHOR)SDNBHD"], ["L0T1851-A&1851-B,JALANKPB6,"], ["Date:11/01/2019", "1X19.0019.00"]],
                   source="ocr", x_step=0.3)
    assert locate("MR D.I.Y. (JOHOR) SDN BHD", table).status == "verified"
    assert locate("LOT 1851-A & 1851-B, JALAN KPB 6", table).status == "verified"  # L0T = LOT on OCR pages
    date = locate("11/01/2019", table)
    assert date.status == "verified" and date.matched_text == "11/01/2019"
    assert date.bbox is not None and date.bbox.x0 == pytest.approx(0.02 + 0.08 * 5 / 15, abs=1e-4)  # not "Date:"
    assert locate("2019-01-11", table).status == "verified"
    assert locate("JOHOR", table).status == "verified"  # between ")" and "(" : word boundaries
    assert locate("KAWASAN", table).status == "unverified"


def test_ambiguous_without_a_box_nearest_with_one() -> None:
    table = _table([["Subtotal", "33.90"], ["Rounding", "0.00"], ["TOTAL", "33.90"]])
    loc = locate("33.90", table)
    assert loc.status == "verified" and loc.ambiguous and loc.matches == 2 and "equally good" in (loc.note or "")
    assert [c.bbox for c in loc.candidates] == [BBox.of(table.boxes[1].tolist()), BBox.of(table.boxes[5].tolist())]
    assert loc.candidates[0].bbox == loc.bbox and all(c.matched_text == "33.90" for c in loc.candidates)
    near = BBox.of(table.boxes[5].tolist())
    picked = locate("33.90", table, near)
    assert not picked.ambiguous and picked.word_indices == (5,)


def test_bad_values_get_a_clear_status() -> None:
    table = _table([["Hello", "world", "مرحبا", "東京都渋谷区", "Straße"]])
    for value, note in (("", "no letters or digits"), ("?!…--", "no letters or digits"), ("x" * 10_000, "not on")):
        loc = locate(value, table)
        assert loc.status == "unverified" and note in (loc.note or ""), value
    assert locate("مرحبا", table).status == "verified"
    assert locate("渋谷", table).status == "verified"  # CJK characters are words of their own
    assert locate("STRASSE", table).status == "verified"
    assert locate("hello", WordTable.empty()).note == "the page has no words (nothing to check against)"


def test_hundred_thousand_word_page_answers() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    texts = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), int(k))) for k in rng.integers(2, 9, n)]
    texts[77_777] = "Total:$1,234.56"
    boxes = np.tile(np.array([[0.1, 0.1, 0.2, 0.11]], np.float32), (n, 1))
    table = WordTable(texts, boxes, np.ones(n, np.float32), "ocr")
    assert locate("1,234.56", table).word_indices == (77_777,)
    assert locate("zebra helicopter invoice", table).status in ("unverified", "approximate")


def _receipt_gold(rid: str) -> tuple[dict, tuple[int, int]]:
    from PIL import Image

    fields = json.loads((RECEIPTS / "fields" / f"{rid}.json").read_text())["fields"]
    return fields, Image.open(RECEIPTS / "img" / f"{rid}.jpg").size


def _inside(b: BBox, g: BBox) -> bool:
    """``b``'s centre lies in ``g`` and ``b`` is at least a third of ``g``'s width (the value within its line)."""
    cx, cy = b.center()
    return g.x0 <= cx <= g.x1 and g.y0 <= cy <= g.y1 and (b.x1 - b.x0) >= (g.x1 - g.x0) / 3


@pytest.mark.corpus
@pytest.mark.parametrize("rid", ["002", "006", "042"])
def test_real_receipts_key_values_are_verified_on_their_gold_boxes(rid: str) -> None:
    from ingest.ocr import ocr_words
    from ingest.pdf import open_document, render

    table = ocr_words(render(open_document(RECEIPTS / "img" / f"{rid}.jpg", "image", None, 1)[0], 144, 4_000_000))
    fields, (w, h) = _receipt_gold(rid)
    for name in ("company", "date", "total"):
        gold = [BBox.of([b[0] / w, b[1] / h, b[2] / w, b[3] / h]) for b in [fields[name]["box"],
                                                                          *fields[name].get("alternatives", [])]]
        loc = locate(fields[name]["value"], table)
        assert loc.status == "verified", (rid, name, fields[name]["value"])
        assert loc.bbox is not None
        # printed more than once (002's total is also written by hand on the receipt): one of the listed places
        places = [c.bbox for c in loc.candidates] or [loc.bbox]
        if name == "date":  # gold is the whole line the date is printed in
            assert any(g.x0 <= b.center()[0] <= g.x1 and g.y0 <= b.center()[1] <= g.y1 for g in gold for b in places)
        else:  # the value's own characters: inside a gold box that also holds its currency ("RM 64.15")
            assert any(b.iou(g) >= 0.5 or _inside(b, g) for g in gold for b in places), (rid, name, loc)
    addr = locate(fields["address"]["value"], table)
    assert addr.status != "unverified" and len(addr.boxes) >= 2  # over several printed lines
