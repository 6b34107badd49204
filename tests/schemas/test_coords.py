"""The coordinate contract and its converters, checked against real rendering where it matters."""

from __future__ import annotations

import numpy as np
import pymupdf
import pytest
from pydantic import ValidationError

from schemas.coords import (
    BBox,
    bbox_from_pixels,
    bbox_from_points,
    bbox_from_quad,
    bbox_from_qwen25,
    bbox_from_rel1000,
    bbox_to_pixels,
    bbox_to_points,
    bbox_to_qwen25,
    bbox_to_rel1000,
    smart_resize,
    union,
)


def test_bbox_validates_order_and_range() -> None:
    assert BBox.of([0.1, 0.2, 0.3, 0.4]).as_list() == [0.1, 0.2, 0.3, 0.4]
    bads = ([0.3, 0.2, 0.1, 0.4], [0.1, 0.4, 0.3, 0.2], [-0.1, 0, 0.5, 0.5], [0, 0, 1.2, 0.5], [0.2, 0.2, 0.2, 0.3])
    for bad in bads:
        with pytest.raises(ValidationError):
            BBox.of(bad)
    with pytest.raises(ValueError):
        BBox.of([0.1, 0.2, 0.3])


def test_clamped_orders_clips_and_drops_offpage() -> None:
    b = BBox.clamped(0.5, 0.9, -0.2, 1.3)
    assert b is not None and b.as_list() == [0.0, 0.9, 0.5, 1.0]
    assert BBox.clamped(1.1, 0.1, 1.5, 0.2) is None


def test_iou_and_union() -> None:
    a, b = BBox.of([0, 0, 0.5, 0.5]), BBox.of([0.25, 0.25, 0.75, 0.75])
    assert a.iou(a) == pytest.approx(1.0)
    assert a.iou(b) == pytest.approx(0.0625 / (0.25 + 0.25 - 0.0625))
    assert union([a, b]).as_list() == [0, 0, 0.75, 0.75]


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_points_converter_matches_rendered_ink(rotation: int) -> None:
    """A word's box, converted from PyMuPDF points with the rotation matrix, covers the word's ink in the
    rendered (displayed) page, for every page rotation."""
    doc = pymupdf.open()
    page = doc.new_page(width=400, height=600)
    page.insert_text((60, 120), "PageLens", fontsize=28)
    page.set_rotation(rotation)
    words = page.get_text("words")
    assert [w[4] for w in words] == ["PageLens"]
    w, h = page.rect.width, page.rect.height
    box = bbox_from_points(words[0][:4], tuple(page.rotation_matrix), w, h)  # type: ignore[arg-type]
    assert box is not None
    pix = page.get_pixmap(dpi=72, colorspace=pymupdf.csGRAY)
    img = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width)
    ys, xs = np.nonzero(img < 128)
    w_px, h_px = pix.width, pix.height
    ink = BBox.of([xs.min() / w_px, ys.min() / h_px, (xs.max() + 1) / w_px, (ys.max() + 1) / h_px])
    # the word box (font ascent/descent included) must contain the ink
    x0, y0, x1, y1 = box.as_list()
    tol = 0.01
    assert x0 - tol <= ink.x0 and y0 - tol <= ink.y0 and ink.x1 <= x1 + tol and ink.y1 <= y1 + tol
    assert box.iou(ink) > 0.4


def test_points_round_trip() -> None:
    box = BBox.of([0.1, 0.2, 0.6, 0.7])
    pts = bbox_to_points(box, 612, 792)
    back = bbox_from_points(pts, (1, 0, 0, 1, 0, 0), 612, 792)
    assert back is not None and np.allclose(back.as_list(), box.as_list())


def test_pixels_and_quad() -> None:
    b = bbox_from_pixels([100, 50, 300, 150], 1000, 500)
    assert b is not None and b.as_list() == [0.1, 0.1, 0.3, 0.3]
    q = bbox_from_quad([[100, 60], [300, 50], [305, 150], [98, 148]], 1000, 500)
    assert q is not None and np.allclose(q.as_list(), [0.098, 0.1, 0.305, 0.3])
    px = bbox_to_pixels(BBox.of([0.1, 0.1, 0.3, 0.3]), 1000, 500)
    assert px == (100, 50, 300, 150)


@pytest.mark.parametrize("box", [[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 1.0], [0.333, 0.5, 0.667, 0.75]])
def test_model_spaces_round_trip(box: list[float]) -> None:
    b = BBox.of(box)
    h, w = smart_resize(1320, 1024)
    q = bbox_from_qwen25(bbox_to_qwen25(b, w, h), w, h)
    assert q is not None and np.allclose(q.as_list(), box, atol=1 / min(w, h))
    r = bbox_from_rel1000(bbox_to_rel1000(b))
    assert r is not None and np.allclose(r.as_list(), box, atol=1e-3)


def test_qwen25_uses_resized_input_size_not_original() -> None:
    # A 2000x3000 page resized by the processor to (h, w); the model's pixel box refers to (w, h).
    h, w = smart_resize(3000, 2000, max_pixels=1024 * 1024)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 1024 * 1024
    b = bbox_from_qwen25([w / 4, h / 2, w / 2, h], w, h)
    assert b is not None and np.allclose(b.as_list(), [0.25, 0.5, 0.5, 1.0])


def test_smart_resize_matches_transformers() -> None:
    tr = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    for hh, ww in [(792, 612), (3000, 2000), (30, 40), (1584, 1224), (100, 5000)]:
        for mx in (1024 * 1320, 448 * 448, 14 * 14 * 4 * 1280):
            assert smart_resize(hh, ww, max_pixels=mx) == tuple(
                tr.smart_resize(hh, ww, factor=28, min_pixels=56 * 56, max_pixels=mx))
