"""OCR with rapidocr-onnxruntime (PP-OCR ONNX models shipped inside the wheel; runs offline).

rapidocr returns text *lines* with 4-point pixel boxes; we split each line into words and give each word a
slice of the line box proportional to its characters (monospace approximation; good enough to highlight
and to verify values, and marked ``source="ocr"`` with the engine's confidence)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import numpy as np

from schemas.coords import boxes_from_pixels
from schemas.wordtable import WordTable

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def engine_version() -> str:
    from importlib.metadata import version

    return f"rapidocr-onnxruntime-{version('rapidocr-onnxruntime')}"


def split_line(text: str, quad: list[list[float]]) -> list[tuple[str, list[float]]]:
    """One OCR line → (word, pixel box) pairs, each word a share of the line's box proportional to its
    characters."""
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if not text:
        return []
    per_char = (x1 - x0) / len(text)
    out = []
    pos = 0
    for token in text.split(" "):
        if token:
            out.append((token, [x0 + pos * per_char, y0, x0 + (pos + len(token)) * per_char, y1]))
        pos += len(token) + 1
    return out


def ocr_words(image: np.ndarray) -> WordTable:
    """Words on a rendered page image (RGB uint8, H×W×3), boxes in the BBox contract, confidence = the
    engine's line score."""
    h, w = image.shape[:2]
    result, _ = _engine()(image[:, :, ::-1])  # rapidocr expects BGR like OpenCV
    texts: list[str] = []
    px: list[list[float]] = []
    conf: list[float] = []
    for quad, text, score in result or []:
        for token, box in split_line(str(text).strip(), quad):
            texts.append(token)
            px.append(box)
            conf.append(float(score))
    if not texts:
        return WordTable.empty("ocr")
    boxes, keep = boxes_from_pixels(np.array(px), w, h)
    return WordTable([t for t, k in zip(texts, keep, strict=True) if k], boxes[keep],
                     np.clip(np.array(conf, np.float32)[keep], 0, 1), "ocr")
