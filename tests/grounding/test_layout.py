"""Layout-aware matching (issue 21, item 1): a value printed over two or three lines of one table cell, beside
other columns that reading order interleaves with it, is verified with one box per printed line — on real
PyMuPDF-made table pages read through the real ingest, and on column orders built from word boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import pytest

from app.service import Service
from grounding.layout import column_order
from grounding.verifier import locate
from schemas.wordtable import WordTable
from tests.conftest import make_settings

# (columns' x, rows of cells; each cell is its printed lines), drawn row by row, line by line across the columns:
# the content stream (and so the words' reading order) interleaves the cells of one row
FIRM_TABLE = ([40, 230, 400], [
    [["Brown Rudnick", "Freed & Gesmer"], ["Joseph F. Rice"], ["617-330-9000"]],
    [["Ness, Motley,", "Loadholt, Richardson", "& Poole"], ["Ron Motley"], ["843-720-9290"]],
    [["Hill & Barlow"], ["Anne Smith", "Senior Counsel"], ["617-428-3000"]],
])
TWO_COLUMNS = ([40, 320], [
    [["Ship to: 1200 Harbor", "Boulevard, Suite 400"], ["Bill to: 77 Lexington", "Avenue, New York"]],
    [["Invoice 2041 dated", "11 January 2019"], ["Total due 1,234.56", "within 30 days"]],
])


def table_pdf(path: Path, spec: tuple[list[int], list[list[list[str]]]]) -> Path:
    xs, rows = spec
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    y = 60.0
    for row in rows:
        depth = max(len(c) for c in row)
        for line in range(depth):
            for x, cell in zip(xs, row, strict=True):
                if line < len(cell):
                    page.insert_text((x, y + 14 * line), cell[line], fontsize=10)
        y += 14 * depth + 18
    doc.save(path)
    return path


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Service, str, str]:
    d = tmp_path_factory.mktemp("layout")
    svc = Service(make_settings(d / "data", None))
    firms, two = table_pdf(d / "firms.pdf", FIRM_TABLE), table_pdf(d / "two.pdf", TWO_COLUMNS)
    ids = [f.doc_id for f in svc.ingest([firms, two]).files]
    yield svc, ids[0], ids[1]
    svc.close()


@pytest.mark.parametrize("value, lines", [
    ("Brown Rudnick Freed & Gesmer", 2),
    ("Ness, Motley, Loadholt, Richardson & Poole", 3),
    ("Anne Smith Senior Counsel", 2),
    ("Ron Motley", 1),
])
def test_a_value_stacked_in_a_cell_of_three_columns_is_verified_line_by_line(forms: tuple, value: str,
                                                                             lines: int) -> None:
    svc, firms, _ = forms
    words = " ".join(svc.catalog.get_pages([(firms, 1)])[0].table.texts)
    if lines > 1:
        assert value not in words, "the reading order interleaves the cell with its neighbours"
    r = svc.locate(firms, 1, value)
    assert r.status == "verified", (value, r.note, words)
    assert len(r.boxes) == lines and r.matched_text is not None
    tops = [b[1] for b in r.boxes]
    assert tops == sorted(tops) and all(b[0] < 0.4 or lines == 1 for b in r.boxes)


@pytest.mark.parametrize("value, lines", [
    ("1200 Harbor Boulevard, Suite 400", 2),
    ("77 Lexington Avenue, New York", 2),
    ("Total due 1,234.56 within 30 days", 2),
    ("11 January 2019", 1),
])
def test_two_columns_of_two_line_values(forms: tuple, value: str, lines: int) -> None:
    svc, _, two = forms
    r = svc.locate(two, 1, value)
    assert r.status == "verified" and len(r.boxes) == lines, (value, r)


@pytest.mark.parametrize("value", ["Gesmer Joseph Rice", "Poole Ron Motley", "Rudnick Rice 617", "Counsel 617-428-3000",
                                   "Senior Counsel Ron Motley", "Gesmer Loadholt"])
def test_words_of_different_cells_never_join(forms: tuple, value: str) -> None:
    """Neither reading order (row by row) nor column order (cell by cell) puts these words together."""
    svc, firms, _ = forms
    assert svc.locate(firms, 1, value).status == "unverified", value


def test_column_order_of_word_boxes() -> None:
    # two cells side by side, two lines each, in reading order: a1 b1 / a2 b2
    texts = ["Alpha", "one", "Beta", "two", "Alpha", "cont", "Beta", "cont"]
    boxes = np.array([[.10, .10, .16, .12], [.17, .10, .20, .12], [.50, .10, .55, .12], [.56, .10, .59, .12],
                      [.10, .125, .16, .145], [.17, .125, .21, .145], [.50, .125, .55, .145], [.56, .125, .60, .145]],
                     np.float32)
    t = WordTable(texts, boxes, np.ones(8, np.float32), "ocr", np.array([0, 0, 0, 0, 1, 1, 1, 1], np.int32))
    col = column_order(t)
    assert col.changed and col.index.tolist() == [0, 1, 4, 5, 2, 3, 6, 7]
    loc = locate("Alpha one Alpha cont", t)
    assert loc.status == "verified" and loc.word_indices == (0, 1, 4, 5) and len(loc.boxes) == 2
    assert locate("one Beta", t).status == "verified", "reading order still comes first"
    # a page with one column: nothing changes
    one = WordTable(["a", "b", "c"], boxes[[0, 4, 5]], np.ones(3, np.float32), "ocr", np.array([0, 1, 1], np.int32))
    assert not column_order(one).changed


def test_with_a_model_box_the_stacked_occurrence_by_it_wins_over_a_flat_one_elsewhere() -> None:
    # "Alpha cont" stacked in the left cell (a1 / a2) beside another cell, and printed flat at the page's foot
    texts = ["Alpha", "Beta", "cont", "two", "Alpha", "cont"]
    boxes = np.array([[.10, .10, .16, .12], [.50, .10, .55, .12], [.10, .125, .16, .145], [.50, .125, .55, .145],
                      [.10, .90, .16, .92], [.17, .90, .21, .92]], np.float32)
    t = WordTable(texts, boxes, np.ones(6, np.float32), "ocr", np.array([0, 0, 1, 1, 2, 2], np.int32))
    from schemas.coords import BBox

    assert locate("Alpha cont", t).word_indices == (4, 5), "reading order first"
    by_cell = locate("Alpha cont", t, BBox.of([.09, .09, .17, .15]))
    assert by_cell.status == "verified" and by_cell.word_indices == (0, 2) and len(by_cell.boxes) == 2
