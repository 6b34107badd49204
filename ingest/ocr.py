"""OCR with rapidocr-onnxruntime (PP-OCR ONNX models shipped inside the wheel; runs offline), turned into
words from the geometry of the recognised characters.

RapidOCR's recogniser often drops the spaces of a line (``MRD.I.Y.(JOHOR)SDNBHD``), but with
``return_word_box=True`` it places every character: the gaps between character centres show where the words
are. A line is split at recognised spaces and wherever the distance between two character centres is clearly
wider than the line's typical character pitch. A word's box is the union of its characters, its confidence
the mean of its characters' scores, and its character edges are kept so a value inside a word gets the box of
exactly its characters. Lines are grouped into printed rows (tolerant to skew) and numbered in reading
order."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np

from schemas.coords import boxes_from_pixels
from schemas.wordtable import WordTable

log = logging.getLogger(__name__)

SPLITTER_VERSION = "charsplit1"  # the ``ocr_words`` stage: bump when lines become words differently, and
# documents with OCR'd pages (only those) are re-read on the next ingest
GAP_PITCHES = 1.5  # a centre-to-centre distance above this many expected pitches is a word break
MIN_PITCH_CHARS = 3  # lines with fewer characters are split at spaces only


@lru_cache(maxsize=1)
def _engine() -> Any:
    from ingest.mupdf import quiet_onnxruntime

    quiet_onnxruntime()
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def engine_version() -> str:
    from importlib.metadata import version

    return f"rapidocr-onnxruntime-{version('rapidocr-onnxruntime')}"


@dataclass
class _Word:
    text: str
    box: list[float]          # pixels x0, y0, x1, y1
    conf: float
    edges: list[float]        # len(text) + 1 pixel x positions


@dataclass
class _Line:
    quad: np.ndarray          # (4, 2) pixels
    words: list[_Word]


def _relative_width(c: str) -> float:
    """A character's width relative to an average one, damped halfway between a proportional font (where 'm'
    is three times 'i') and a monospaced one (receipts), since the page may be either."""
    return 1 + 0.4 * (_WIDTHS.get(c, 1.0) - 1)


_WIDTHS = {**dict.fromkeys("ijlI.,:;!|'`", 0.45), **dict.fromkeys("tfr()-[]/1", 0.7),
           **dict.fromkeys("mwMW%@", 1.5), **dict.fromkeys("ABCDEFGHKNOPQRSUVXYZ&", 1.2)}


def split_chars(chars: list[str], boxes: np.ndarray, scores: list[float]) -> list[_Word]:
    """One recognised line, character by character (``boxes`` (n, 4) pixel x0, y0, x1, y1) → words: split at
    spaces and where two character centres are more than ``GAP_PITCHES`` times further apart than the line's
    typical pitch says they should be (given the two characters' widths)."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    solid = [k for k, c in enumerate(chars) if not c.isspace()]
    pitch = math.inf
    if len(solid) >= MIN_PITCH_CHARS:
        pair = np.array([(_relative_width(chars[a]) + _relative_width(chars[b])) / 2
                         for a, b in pairwise(solid)])
        pitch = float(np.median(np.diff(cx[solid]) / pair))
    words: list[_Word] = []
    run: list[int] = []

    def close() -> None:
        if run:
            b = boxes[run]
            x0, x1 = float(b[:, 0].min()), float(b[:, 2].max())
            inner = [(float(boxes[a, 2]) + float(boxes[c, 0])) / 2 for a, c in pairwise(run)]
            words.append(_Word("".join(chars[k] for k in run), [x0, float(b[:, 1].min()), x1, float(b[:, 3].max())],
                               float(np.mean([scores[k] for k in run])), [x0, *inner, x1]))
            run.clear()

    for k, c in enumerate(chars):
        if c.isspace():
            close()
            continue
        if run:
            prev = run[-1]
            expected = pitch * (_relative_width(chars[prev]) + _relative_width(c)) / 2
            if cx[k] - cx[prev] > GAP_PITCHES * expected:
                close()
        run.append(k)
    close()
    return words


def split_line(text: str, quad: np.ndarray, score: float) -> list[_Word]:
    """A line without character geometry: words at spaces, each a share of the line box proportional to its
    characters (monospace approximation)."""
    x0, y0 = quad.min(0)
    x1, y1 = quad.max(0)
    if not text:
        return []
    per = (x1 - x0) / len(text)
    out, pos = [], 0
    for token in text.split(" "):
        if token:
            a = x0 + pos * per
            out.append(_Word(token, [a, y0, a + len(token) * per, y1], score,
                             [a + k * per for k in range(len(token) + 1)]))
        pos += len(token) + 1
    return out


def reading_order(lines: list[_Line]) -> list[list[_Line]]:
    """Lines grouped into printed rows, rows top to bottom and lines left to right. Skew-tolerant: centres are
    de-rotated by the page's median line angle before rows are formed."""
    if not lines:
        return []
    angles, weights = [], []
    for ln in lines:
        (ax, ay), (bx, by) = ln.quad[0], ln.quad[1]
        w, h = bx - ax, float(np.linalg.norm(ln.quad[3] - ln.quad[0]))
        if w > 3 * max(h, 1):
            angles.append(math.atan2(by - ay, bx - ax))
            weights.append(w)
    angle = float(np.median(angles)) if angles else 0.0
    c, s = math.cos(angle), math.sin(angle)
    items = []
    for ln in lines:
        mx, my = ln.quad.mean(0)
        y = -s * mx + c * my
        h = float(np.linalg.norm(ln.quad[3] - ln.quad[0]))
        items.append((y, c * mx + s * my, max(h, 1.0), ln))
    items.sort(key=lambda t: t[0])
    rows: list[list[tuple[float, float, float, _Line]]] = []
    for it in items:
        if rows:
            row = rows[-1]
            ref_y = float(np.mean([r[0] for r in row]))
            if abs(it[0] - ref_y) < 0.5 * min(it[2], min(r[2] for r in row)):
                row.append(it)
                continue
        rows.append([it])
    return [[r[3] for r in sorted(row, key=lambda r: r[1])] for row in rows]


def ocr_words(image: np.ndarray) -> WordTable:
    """Words on a rendered page image (RGB uint8, H×W×3), boxes in the BBox contract, in reading order, with
    line ids (printed rows), character edges and confidences from the characters' scores."""
    h, w = image.shape[:2]
    result, _ = _engine()(image[:, :, ::-1], return_word_box=True)  # rapidocr expects BGR like OpenCV
    lines = []
    for item in result or []:
        quad, text, score = np.asarray(item[0], np.float64), str(item[1]), float(item[2])
        char_quads = item[3] if len(item) > 3 else None
        chars = list(text)
        if char_quads and len(char_quads) == len(chars) and len(item) > 5 and len(item[5]) == len(chars):
            cq = np.asarray(char_quads, np.float64).reshape(-1, 4, 2)
            boxes = np.stack([cq[:, :, 0].min(1), cq[:, :, 1].min(1), cq[:, :, 0].max(1), cq[:, :, 1].max(1)], 1)
            words = split_chars(chars, boxes, [float(v) for v in item[5]])
        else:
            words = split_line(text.strip(), quad, score)
        if words:
            lines.append(_Line(quad, words))
    texts: list[str] = []
    px: list[list[float]] = []
    conf: list[float] = []
    line_ids: list[int] = []
    edges: list[float] = []
    for row_no, row in enumerate(reading_order(lines)):
        for ln in row:
            for wd in ln.words:
                texts.append(wd.text)
                px.append(wd.box)
                conf.append(wd.conf)
                line_ids.append(row_no)
                span = max(wd.box[2] - wd.box[0], 1e-6)
                edges += [(e - wd.box[0]) / span for e in wd.edges]
    if not texts:
        return WordTable.empty("ocr")
    boxes, keep = boxes_from_pixels(np.array(px), w, h)
    ix = np.flatnonzero(keep)
    table = WordTable(texts, boxes, np.clip(np.array(conf, np.float32), 0, 1), "ocr",
                      np.array(line_ids, np.int32), np.clip(np.array(edges, np.float32), 0, 1))
    return table if len(ix) == len(texts) else table.take(ix)
