"""Spans of a page's words for verifier checks, shared by tests/vlm/test_grounding.py and bench/verify_spans.py:
a random run of 3-6 words, the box that truly holds it, and the sloppy box a model might point with."""

from __future__ import annotations

import numpy as np

from schemas.coords import BBox, union
from schemas.wordtable import WordTable


def draw_span(t: WordTable, rng: np.random.Generator) -> tuple[int, int, str] | None:
    """(start, length, text) of 3-6 consecutive words of ``t``; None when the run has fewer than 6 letters or
    digits (too little to locate)."""
    n = int(rng.integers(3, 7))
    i = int(rng.integers(len(t) - n))
    value = " ".join(t.texts[i:i + n])
    return (i, n, value) if sum(c.isalnum() for c in value) >= 6 else None


def span_box(t: WordTable, start: int, n: int) -> BBox:
    """The union of the words' boxes: where the span truly is."""
    return union(BBox.of(b) for b in t.boxes[start:start + n].tolist())


def sloppy(box: BBox) -> BBox:
    """A hint box a little off and a little large, as a model's bbox often is."""
    return BBox.clamped(box.x0 - 0.02, box.y0 - 0.01, box.x1 + 0.03, box.y1 + 0.01)
