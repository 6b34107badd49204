"""OCR with rapidocr-onnxruntime (PP-OCR ONNX models shipped inside the wheel; runs offline).

rapidocr returns text *lines* with 4-point pixel boxes; we split each line into words and give each word a
slice of the line box proportional to its characters (monospace approximation; good enough to highlight
and to verify values, and marked ``source="ocr"`` with the engine's confidence)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import numpy as np

from schemas.coords import bbox_from_quad
from schemas.documents import Word

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def engine_version() -> str:
    from importlib.metadata import version

    return f"rapidocr-onnxruntime-{version('rapidocr-onnxruntime')}"


def split_line(text: str, quad: list[list[float]], score: float, width: int, height: int) -> list[Word]:
    """One OCR line → words, each with a share of the line's box proportional to its characters."""
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    n_chars = len(text)
    if n_chars == 0:
        return []
    per_char = (x1 - x0) / n_chars
    out = []
    pos = 0
    for token in text.split(" "):
        if token:
            wx0 = x0 + pos * per_char
            wx1 = x0 + (pos + len(token)) * per_char
            box = bbox_from_quad([[wx0, y0], [wx1, y1]], width, height)
            if box is not None:
                out.append(Word(text=token, bbox=box, confidence=float(min(1.0, max(0.0, score))), source="ocr"))
        pos += len(token) + 1
    return out


def ocr_words(image: np.ndarray) -> list[Word]:
    """Words on a rendered page image (RGB uint8, H×W×3), boxes in the BBox contract."""
    h, w = image.shape[:2]
    result, _ = _engine()(image[:, :, ::-1])  # rapidocr expects BGR like OpenCV
    words: list[Word] = []
    for quad, text, score in result or []:
        words.extend(split_line(str(text).strip(), quad, float(score), w, h))
    return words
