"""Planning and merging the page windows of a long extraction (vlm.windows.plan_windows / Merge)."""

from __future__ import annotations

from schemas.answers import FieldBox, FieldResult
from schemas.coords import BBox
from vlm.user_schema import array_items, is_array
from vlm.windows import Merge, plan_windows


def _order(k: tuple[str, int]) -> tuple[str, int]:
    return k


def test_each_field_reads_at_most_per_field_windows_and_arrays_read_in_page_order() -> None:
    ranked = {"total": [("d", p) for p in (90, 3, 250, 7, 8, 9, 10, 11, 12)],
              "number": [("d", p) for p in (90, 3, 250, 7, 8, 9, 10, 11, 12)],  # the same pages: shares calls
              "items": [("d", p) for p in (41, 40, 199, 42, 5)]}
    windows = plan_windows(ranked, {"items"}, first=("d", 1), max_pages=3, per_field=2, order=_order)
    for name in ranked:
        assert 1 <= sum(name in w.fields for w in windows) <= 2
    assert all(len(w.pages) <= 3 for w in windows)
    scalar = [w for w in windows if "total" in w.fields]
    assert scalar[0].pages == (("d", 1), ("d", 3), ("d", 90)) and scalar[0].fields == ("total", "number")
    assert scalar[1].pages == (("d", 7), ("d", 8), ("d", 250))
    items = [w.pages for w in windows if "items" in w.fields]
    assert items == [(("d", 5), ("d", 40), ("d", 41)), (("d", 42), ("d", 199))], "best pages, in page order"
    assert [w.pages[0] for w in windows] == sorted(w.pages[0] for w in windows)


def _leaf(path: str, value: object, page: int, status: str = "verified") -> FieldResult:
    return FieldResult(path=path, value=value, confidence=0.9 if status == "verified" else 0.0, status=status,
                       boxes=[FieldBox(doc_id="d", page=page, bbox=BBox.of([0.1, 0.1, 0.2, 0.2]))])


def test_overlapping_windows_give_an_item_once_but_equal_items_on_two_pages_both_stay() -> None:
    m = Merge({"items"})
    m.add("items", 0, [{"a": "bolt"}, {"a": "nut"}], [_leaf("items[0].a", "bolt", 40), _leaf("items[1].a", "nut", 41)])
    m.add("items", 1, [{"a": "nut"}, {"a": "nut"}], [_leaf("items[0].a", "nut", 41), _leaf("items[1].a", "nut", 42)])
    data, fields = m.result()
    assert data["items"] == [{"a": "bolt"}, {"a": "nut"}, {"a": "nut"}]
    assert [(f.path, f.boxes[0].page) for f in fields] == [("items[0].a", 40), ("items[1].a", 41),
                                                            ("items[2].a", 42)]


def test_a_verified_answer_beats_an_unverified_one_and_the_loser_is_reported() -> None:
    m = Merge(set())
    m.add("total", 0, 99.0, [_leaf("total", 99.0, 2, status="unverified")])
    m.add("total", 1, 12.5, [_leaf("total", 12.5, 7)])
    m.add("total", 2, None, [_leaf("total", None, 9, status="unverified")])  # no answer: not a conflict
    m.add("total", 3, 12.50, [_leaf("total", 12.50, 8)])  # the same value again: not a conflict either
    data, (total,) = m.result()
    assert data == {"total": 12.5} and total.boxes[0].page == 7
    assert [(a.value, a.status) for a in total.alternatives] == [(99.0, "unverified")]


def test_equal_rows_in_one_window_all_stay_and_a_null_list_adds_nothing() -> None:
    """The same screw bought twice on page 40 (two rows, two boxes) is two items; a window that answered null for
    the list neither replaces nor hides the others' rows."""
    m = Merge({"items"})
    lower = FieldResult(path="items[1].a", value="screw", confidence=0.9, status="verified",
                        boxes=[FieldBox(doc_id="d", page=40, bbox=BBox.of([0.1, 0.3, 0.2, 0.4]))])
    m.add("items", 0, [{"a": "screw"}, {"a": "screw"}], [_leaf("items[0].a", "screw", 40), lower])
    m.add("items", 1, None, [_leaf("items", None, 60, status="unverified")])
    m.add("items", 2, [{"a": "bolt"}], [_leaf("items[0].a", "bolt", 80)])
    data, fields = m.result()
    assert data["items"] == [{"a": "screw"}, {"a": "screw"}, {"a": "bolt"}]
    assert [f.path for f in fields] == ["items[0].a", "items[1].a", "items[2].a"]


def test_nullable_lists_are_lists() -> None:
    item = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert is_array({"type": "array", "items": item}) and is_array({"type": ["array", "null"], "items": item})
    assert is_array({"anyOf": [{"type": "array", "items": item}, {"type": "null"}]})
    assert not is_array({"anyOf": [{"type": "string"}, {"type": "null"}]}) and not is_array({"type": "string"})
    # their items (a line-item table's columns make the field's search question)
    assert array_items({"type": "array", "items": item}) == item
    assert array_items({"anyOf": [{"type": "array", "items": item}, {"type": "null"}]}) == item
    assert array_items({"anyOf": [{"type": "string"}, {"type": "null"}]}) is None
