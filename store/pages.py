"""Page images of stored documents, rendered on demand (page images are not stored; the source file is).

``render_for_model`` renders at the size a Qwen-VL processor keeps unchanged (multiples of 28 inside the pixel
budget), so a model's pixel boxes map back to the page exactly. ``render_png`` draws boxes for people."""

from __future__ import annotations

import functools
import io
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from schemas.coords import BBox, bbox_to_pixels, smart_resize
from schemas.errors import InputError, NotFound, PasswordRequired, RenderFailed
from store.mupdf import pymupdf

# Bounds on one page image for people, whatever the caller asks: memory and time stay small (a 500×20000 pt
# page at width 2600 would otherwise be a 270-megapixel pixmap).
MAX_PIXELS = 12_000_000  # pixels rendered for one PNG (the whole page, before any crop); larger asks scale down
MAX_ZOOM = 8.0  # pixels per point
MAX_BOXES = 200  # boxes drawn on one image

# status -> (outline RGB, fill RGBA) ; verified green, approximate amber, unverified red (dashed in the UI legend)
STYLES = {"verified": ((22, 163, 74), (22, 163, 74, 50)), "approximate": ((217, 119, 6), (217, 119, 6, 50)),
          "unverified": ((220, 38, 38), (220, 38, 38, 40)), "match": ((37, 99, 235), (250, 204, 21, 90))}


# MuPDF is not thread-safe: page renders from concurrent callers (batch extraction, API requests) take turns.
RENDER_LOCK = threading.RLock()
F = TypeVar("F", bound=Callable[..., Any])


def _serialised(fn: F) -> F:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with RENDER_LOCK:
            return fn(*args, **kwargs)

    return cast(F, run)


def _open(path: Path, page_no: int) -> tuple[pymupdf.Document, pymupdf.Page]:
    try:
        doc = pymupdf.open(str(path))
    except Exception as e:  # the message names the file, never where the server keeps it
        why = str(e).replace(str(path), path.name).replace(str(path.parent), "")[:200]
        raise NotFound(f"the stored file {path.name[:16]} cannot be opened ({e.__class__.__name__}: {why}); "
                       "re-ingest the document") from e
    if doc.needs_pass:
        raise PasswordRequired("this document is password protected and its pages cannot be rendered without the "
                               "password; re-ingest a decrypted copy to view its pages")
    if not 1 <= page_no <= doc.page_count:
        raise InputError(f"page {page_no} does not exist; the document has {doc.page_count} pages")
    return doc, doc[page_no - 1]


def png_zoom(width_pt: float, height_pt: float, page_width_px: float) -> float:
    """Pixels per point that make the page ``page_width_px`` pixels wide, within [0.05, MAX_ZOOM] and such that
    the whole page is at most MAX_PIXELS pixels."""
    w, h = max(width_pt, 1e-3), max(height_pt, 1e-3)
    zoom = max(0.05, min(MAX_ZOOM, page_width_px / w))
    # largest z with (w·z + 1)(h·z + 1) ≤ MAX_PIXELS: MuPDF rounds each side out by up to a pixel
    cap = (-(w + h) + math.sqrt((w + h) ** 2 + 4 * w * h * (MAX_PIXELS - 1))) / (2 * w * h)
    return min(zoom, cap)


def _pixmap(page: pymupdf.Page, page_no: int, matrix: pymupdf.Matrix) -> pymupdf.Pixmap:
    """An RGB pixmap of the page; MuPDF's errors on a malformed page (FzErrorLimit, ...) become RenderFailed."""
    try:
        return page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
    except (pymupdf.mupdf.FzErrorBase, RuntimeError, ValueError, MemoryError) as e:
        raise RenderFailed(f"page {page_no} cannot be drawn: the file is malformed there "
                           f"({e.__class__.__name__}: {str(e)[:200]}); re-export the document and re-ingest it"
                           ) from e


@_serialised
def render_for_model(path: Path, page_no: int, *, max_pixels: int, min_pixels: int = 56 * 56,
                     dpi: float = 144.0) -> np.ndarray:
    """RGB uint8 (H, W, 3) with H, W multiples of 28 and min_pixels ≤ H·W ≤ max_pixels, the page stretched to
    exactly that size (aspect kept to within one 28-px step)."""
    doc, page = _open(path, page_no)
    try:
        w_pt, h_pt = page.rect.width, page.rect.height
        h, w = smart_resize(max(28, round(h_pt * dpi / 72)), max(28, round(w_pt * dpi / 72)),
                            min_pixels=min_pixels, max_pixels=max_pixels)
        pix = _pixmap(page, page_no, pymupdf.Matrix(w / w_pt, h / h_pt))
        img = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, pix.n)[:, :, :3]
        if img.shape[:2] != (h, w):  # rounding inside MuPDF: pad or crop by a pixel
            out = np.full((h, w, 3), 255, np.uint8)
            hh, ww = min(h, img.shape[0]), min(w, img.shape[1])
            out[:hh, :ww] = img[:hh, :ww]
            img = out
        return np.ascontiguousarray(img)
    finally:
        doc.close()


@_serialised
def render_png(path: Path, page_no: int, *, width: int = 1000, boxes: Sequence[tuple[BBox, str]] = (),
               crop: BBox | None = None) -> bytes:
    """PNG of a page ``width`` pixels wide, with ``boxes`` drawn (each with a STYLES key); ``crop`` zooms to a
    region (the page is rendered so that the region is ``width`` wide).

    The whole page is rendered at most MAX_PIXELS pixels (and MAX_ZOOM pixels per point): a larger ask gives a
    smaller image, never more memory. Raises InputError (over MAX_BOXES boxes, a bad page), RenderFailed (MuPDF
    cannot draw the page), PasswordRequired, NotFound."""
    from PIL import Image, ImageDraw

    if len(boxes) > MAX_BOXES:
        raise InputError(f"{len(boxes)} boxes asked; at most {MAX_BOXES} can be drawn on one page image")
    if width < 1:
        raise InputError(f"width must be a positive number of pixels, got {width}")
    doc, page = _open(path, page_no)
    try:
        region = crop.x1 - crop.x0 if crop is not None else 1.0
        zoom = png_zoom(page.rect.width, page.rect.height, width / region)
        pix = _pixmap(page, page_no, pymupdf.Matrix(zoom, zoom))
        img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    finally:
        doc.close()
    if boxes:
        overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        stroke = max(1, round(img.width / 400))  # thin on thumbnails, visible on large pages
        for box, style in boxes:
            line, fill = STYLES.get(style, STYLES["match"])
            x0, y0, x1, y1 = bbox_to_pixels(box, img.width, img.height)
            draw.rectangle((x0 - stroke, y0 - stroke, x1 + stroke, y1 + stroke), fill=fill, outline=line,
                           width=stroke)
        img = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
    if crop is not None:
        x0, y0, x1, y1 = bbox_to_pixels(crop, img.width, img.height)
        img = img.crop((x0, y0, x1, y1))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
