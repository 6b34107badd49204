"""Grounding verification: find a value (an answer quote or an extracted field) on the page it was cited on,
by aligning its characters against the page's character stream (``grounding.charstream``) — across word and line
boundaries, tolerant to OCR errors — and return the boxes of exactly the matched characters, one per line.

Outcome:
- ``verified``: found exactly after normalisation (``grounding.normalise``: case, accents, spacing, punctuation,
  currency, thousands separators, date spellings, OCR confusions), starting and ending on word boundaries, and
  near the model's box when it gave one;
- ``approximate``: found only fuzzily (rapidfuzz alignment similarity ≥ ``FUZZY_MIN``), only inside longer
  words, or exactly but far from the model's box;
- ``unverified``: not on the page (a likely hallucination), with a note saying why.

Several equally good matches: the one nearest the model's box; with no box, the first in reading order, and the
result says the match is ``ambiguous``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import numpy as np

from grounding.charstream import PageStream, match_boxes, stream_of, words_of
from grounding.layout import ColumnOrder, column_order
from grounding.normalise import OCR_CONFUSIONS, date_variants, normalise, number_of, number_variants, parse_dates
from schemas.coords import BBox, union
from schemas.wordtable import WordTable

Status = Literal["verified", "approximate", "unverified"]

FUZZY_MIN = 0.85          # rapidfuzz partial-ratio similarity (0–1) for an approximate match
INSIDE_WORD_SCORE = 0.9   # score of an exact match that starts or ends inside a longer word
MIN_FUZZY_CHARS = 4       # shorter values must match exactly
MAX_FUZZY_CHARS = 512     # longer values are looked for exactly only (alignment cost grows with length)
NEAR_DISTANCE = 0.15      # page fractions: a match whose center is further from the model's box is "elsewhere"
TEXT_LAYER_CHARS_PER_EDIT = 12  # on text-layer pages a fuzzy match may differ by one edit per this many chars
MAX_CANDIDATES = 64       # matches examined per value (a one-letter value on a dense page has thousands)
MAX_LISTED = 20           # places listed for an ambiguous value (with no box to choose by)


@dataclass(frozen=True)
class Located:
    status: Status
    bbox: BBox | None
    confidence: float
    matched_text: str | None
    word_indices: tuple[int, ...] = ()
    match_score: float = 0.0
    boxes: tuple[BBox, ...] = ()
    ambiguous: bool = False
    matches: int = 0  # how many equally good matches there were
    candidates: tuple[Place, ...] = ()  # ambiguous: each of them (up to MAX_LISTED), the one shown first
    note: str | None = None
    ocr_score: float | None = None  # the OCR engine's mean score for the matched words (None: a text layer)
    far: bool = False  # found, but away from the model's box


@dataclass(frozen=True)
class Place:
    bbox: BBox
    boxes: tuple[BBox, ...]
    matched_text: str


def value_text(value: object) -> str:
    """The text to look for on the page for a value of any JSON type."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def locate(value: object, table: WordTable, near: BBox | None = None, *, model_prob: float | None = None) -> Located:
    """Find ``value`` on a page (its words ``table``). ``near``: the model's box for it (BBox contract), if any.

    ``model_prob``: the model's own probability for the value's tokens (0–1), folded into the confidence."""
    text = value_text(value)
    if len(table) == 0:
        return _unverified(near, "the page has no words (nothing to check against)")
    stream = stream_of(table)
    target = normalise(text, stream.ocr)
    if not target:
        return _unverified(near, "the value has no letters or digits to look for")
    num = number_of(text)
    spans, score, tab, stream, index = _find(text, target, num, table, stream)
    if not spans:
        return _unverified(near, "not on the page")
    options = []
    for s, e in spans[:MAX_CANDIDATES]:
        boxes, words, matched = match_boxes(tab, stream, s, e, text)
        if index is not None:  # found in column order: the page's own word indices
            words = [int(index[w]) for w in words]
        if boxes:
            options.append((s, e, boxes, words, matched))
            if near is None and len(options) >= MAX_LISTED:  # nothing to choose by: reading order, listed
                break
    if not options:
        return _unverified(near, "not on the page")
    s, e, boxes, words, matched = min(options, key=lambda o: _distance(union(o[2]), near))
    box = union(boxes)
    elsewhere = near is not None and _distance(box, near) > NEAR_DISTANCE and box.iou(near) == 0
    if near is not None and elsewhere and index is None:  # the one by the model's box may be stacked in a cell
        nearer = _near_in_columns(text, target, num, table, near, _distance(box, near))
        if nearer is not None:
            boxes, words, matched = nearer
            box, score = union(boxes), 1.0
            elsewhere = _distance(box, near) > NEAR_DISTANCE and box.iou(near) == 0
    status: Status = "verified" if score == 1.0 and not elsewhere else "approximate"
    ocr_conf = float(np.mean(table.conf[words])) if stream.ocr else 1.0
    conf = score * ocr_conf * (0.75 if elsewhere else 1.0)
    if model_prob is not None:
        conf *= 0.5 + 0.5 * max(0.0, min(1.0, model_prob))
    ambiguous = near is None and len(options) > 1
    places = tuple(Place(bbox=union(o[2]), boxes=tuple(o[2]), matched_text=o[4]) for o in options) if ambiguous \
        else ()
    note = (f"{len(spans)} equally good matches; the first in reading order is shown, every one is listed in "
            "candidates" if ambiguous else None)
    return Located(status=status, bbox=box, confidence=round(conf, 4), matched_text=matched,
                   word_indices=tuple(words), match_score=score, boxes=tuple(boxes), ambiguous=ambiguous,
                   matches=len(spans), candidates=places, note=note,
                   ocr_score=round(ocr_conf, 4) if stream.ocr else None, far=elsewhere)


Reading = tuple[WordTable, PageStream, "np.ndarray | None"]


def _near_in_columns(text: str, target: str, num: str | None, table: WordTable, near: BBox,
                     than: float) -> tuple[list[BBox], list[int], str] | None:
    """An exact match in column order nearer the model's box than ``than``: (boxes, the page's word indices,
    matched text), or None."""
    col = column_order(table)
    if not col.changed:
        return None
    strm = stream_of(col.table)
    best, best_d = None, than
    for a, b in _exact(text, target, num, strm)[:MAX_CANDIDATES]:
        if not col.one_chain(words_of(strm, a, b)):
            continue
        boxes, ws, matched = match_boxes(col.table, strm, a, b, text)
        if boxes and (d := _distance(union(boxes), near)) < best_d:
            best, best_d = (boxes, [int(col.index[w]) for w in ws], matched), d
    return best


def _find(text: str, target: str, num: str | None, table: WordTable,
          stream: PageStream) -> tuple[list[tuple[int, int]], float, WordTable, PageStream, np.ndarray | None]:
    """The spans of the value and their score, in the reading they were found in: the page's reading order
    first, then its column order (``grounding.layout``: a value over several lines of one table cell), for each kind of
    match in turn — exact, inside longer words, fuzzy (the better of the two readings)."""
    readings: list[Reading] = [(table, stream, None)]
    col: ColumnOrder | None = None

    def both() -> list[Reading]:
        nonlocal col
        if col is None:
            col = column_order(table)
            if col.changed:
                readings.append((col.table, stream_of(col.table), col.index))
        return readings

    def kept(spans: list[tuple[int, int]], strm: PageStream, idx: np.ndarray | None) -> list[tuple[int, int]]:
        if idx is None or col is None:
            return spans
        return [(s, e) for s, e in spans if col.one_chain(words_of(strm, s, e))]

    for tab, strm, idx in both():
        if spans := kept(_exact(text, target, num, strm), strm, idx):
            return spans, 1.0, tab, strm, idx
    if num is not None:
        return [], 0.0, table, stream, None
    for tab, strm, idx in both():
        if spans := kept(_inside_words(target, strm), strm, idx):
            return spans, INSIDE_WORD_SCORE, tab, strm, idx
    best: tuple[list[tuple[int, int]], float, WordTable, PageStream, np.ndarray | None] = ([], 0.0, table, stream,
                                                                                           None)
    for tab, strm, idx in both():
        spans, score = _fuzzy(target, strm)
        spans = kept(spans, strm, idx)
        if spans and score > best[1]:
            best = (spans, score, tab, strm, idx)
    return best


def _unverified(near: BBox | None, note: str) -> Located:
    return Located(status="unverified", bbox=near, confidence=0.0, matched_text=None,
                   boxes=(near,) if near else (), note=note)


def _occurrences(needle: str, hay: str) -> list[int]:
    out: list[int] = []
    i = hay.find(needle)
    while i >= 0 and len(out) < 10 * MAX_CANDIDATES:
        out.append(i)
        i = hay.find(needle, i + 1)
    return out


def _exact(text: str, target: str, num: str | None, stream: PageStream) -> list[tuple[int, int]]:
    """Spans of the stream equal to the value (or one of its number/date spellings), on word boundaries; a
    number must also read back as the same number."""
    targets = {target}
    if num is not None:
        targets |= number_variants(num)
    else:
        for d in parse_dates(text):
            targets |= date_variants(d)
    if stream.ocr:
        targets = {t.translate(OCR_CONFUSIONS) for t in targets}
    found: list[tuple[int, int]] = []
    for t in targets:
        for p in _occurrences(t, stream.text):
            q = p + len(t)
            if stream.clean_boundary(p) and stream.clean_boundary(q) and _same_number(num, stream, p, q):
                found.append((p, q))
    return _disjoint(found)


def _same_number(num: str | None, stream: PageStream, p: int, q: int) -> bool:
    if num is None:
        return True
    text = stream.original(p, q)
    if not any(c.isdigit() for c in text):  # an OCR'd "S" is not the number 5
        return False
    got = number_of(text, ocr=stream.ocr)
    if num.startswith("-"):
        before = stream.orig[max(0, int(stream.src[p]) - 2):int(stream.src[p])]
        return got == num[1:] and ("-" in before or "(" in before)
    return got == num


def _inside_words(target: str, stream: PageStream) -> list[tuple[int, int]]:
    """Exact occurrences that begin or end inside a longer word (e.g. a word glued to its neighbour)."""
    if len(target) < MIN_FUZZY_CHARS:
        return []
    return _disjoint([(p, p + len(target)) for p in _occurrences(target, stream.text)])


def _fuzzy(target: str, stream: PageStream) -> tuple[list[tuple[int, int]], float]:
    """The best approximate alignment of the value inside the stream (rapidfuzz partial ratio: the substring of
    the page most similar to the value, insertions and deletions allowed)."""
    if not MIN_FUZZY_CHARS <= len(target) <= min(MAX_FUZZY_CHARS, len(stream.text)):
        return [], 0.0
    from rapidfuzz import fuzz

    r = fuzz.partial_ratio_alignment(target, stream.text, score_cutoff=FUZZY_MIN * 100)
    if r is None or r.dest_end <= r.dest_start:
        return [], 0.0
    s, e, score = _refine(target, stream.text, r.dest_start, r.dest_end)
    if not stream.ocr:
        from rapidfuzz.distance import Levenshtein

        # a text layer has no recognition errors: only a few edits (a model's typo) are "approximately there"
        if Levenshtein.distance(target, stream.text[s:e]) > max(1, len(target) // TEXT_LAYER_CHARS_PER_EDIT):
            return [], 0.0
    return [(s, e)], round(min(score, r.score) / 100, 4)


def _refine(target: str, text: str, s: int, e: int) -> tuple[int, int, float]:
    """Partial-ratio windows have the value's length; where OCR dropped or added characters, move each end by
    up to ``slack`` characters to the span whose whole text is most similar to the value."""
    from rapidfuzz import fuzz

    slack = max(2, len(target) // 10)
    best = (s, e, fuzz.ratio(target, text[s:e]))
    for ds in range(-slack, slack + 1):
        for de in range(-slack, slack + 1):
            a, b = max(0, s + ds), min(len(text), e + de)
            if b > a:
                r = fuzz.ratio(target, text[a:b], score_cutoff=best[2])
                if r > best[2] + 1e-9:
                    best = (a, b, r)
    return best


def _disjoint(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans in reading order, longest first where they overlap."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(set(spans), key=lambda x: (x[0], -(x[1] - x[0]))):
        if out and s < out[-1][1]:
            continue
        out.append((s, e))
    return out


def _distance(box: BBox, near: BBox | None) -> float:
    if near is None:
        return 0.0
    (ax, ay), (bx, by) = box.center(), near.center()
    return math.hypot(ax - bx, ay - by)
