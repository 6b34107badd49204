"""Grounding verification: find a value (an answer quote or an extracted field) among the words of the page it
was cited on, and snap its box to the union of the matching words.

Matching is done on *canonical* tokens: Unicode-normalised and case-folded, surrounding punctuation and currency
marks stripped, numbers rewritten without thousands separators ("4,800.00", "4.800,00" and "€4800" are all
"4800.00"/"4800"), line-end hyphenation joined ("infor-" + "mation"), whitespace ignored. Dates match by
calendar day whatever their spelling ("30 November 2026" = "2026-11-30" = "30/11/2026").

Outcome: ``verified`` (found; if the model gave a box, near it), ``approximate`` (found only by a fuzzy match,
or found exactly but elsewhere on the page), ``unverified`` (not on the page: a likely hallucination)."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Literal

import numpy as np

from schemas.coords import BBox
from schemas.wordtable import WordTable

Status = Literal["verified", "approximate", "unverified"]

CURRENCY_SIGNS = "$€£¥₹₩₽¢₺₫₴₦"
CURRENCY_CODES = {"usd", "eur", "gbp", "jpy", "chf", "cad", "aud", "cny", "inr", "sek", "nok", "dkk", "pln", "czk"}
FUZZY_MIN = 0.8           # SequenceMatcher ratio for an approximate match
NEAR_DISTANCE = 0.15      # page fractions: a match whose center is further from the model's box is "elsewhere"
_PUNCT = "\"'“”‘’«»()[]{}<>.,;:!?*·•|"
_NUM = re.compile(r"^[+-]?(\d{1,3}([,.' ]\d{3})+|\d+)([.,]\d+)?%?$")
_DATE_SEPARATORS = re.compile(r"[/.\-]")


@dataclass(frozen=True)
class Located:
    status: Status
    bbox: BBox | None
    confidence: float
    matched_text: str | None
    word_indices: tuple[int, ...] = ()
    match_score: float = 0.0


@lru_cache(maxsize=65536)
def canonical(token: str) -> str:
    """Canonical form of one word (see module doc); '' for tokens that carry no content (a lone "$")."""
    t = unicodedata.normalize("NFKC", token).casefold().strip()
    t = t.strip(_PUNCT + CURRENCY_SIGNS)
    t = t.strip(_PUNCT)
    if t in CURRENCY_CODES:
        return ""
    if _NUM.match(t):
        return _canonical_number(t)
    return t


def _canonical_number(t: str) -> str:
    """'4,800.00' / '4.800,00' / "4'800" → '4800'; '0,5' → '0.5'; '12.50%' → '12.5%'.

    With both ',' and '.', the later one is the decimal mark. With one kind used several times, it groups
    thousands. Used once: ',' followed by exactly three digits groups thousands, otherwise it is a decimal mark;
    '.' is a decimal mark (the English reading of '1.234')."""
    pct = t.endswith("%")
    t = t.rstrip("%").replace("'", "").replace(" ", "")
    sign = "-" if t.startswith("-") else ""
    t = t.lstrip("+-")
    if "," in t and "." in t:
        dec = "," if t.rfind(",") > t.rfind(".") else "."
    elif t.count(",") > 1 or t.count(".") > 1:
        dec = ""
    elif "," in t:
        dec = "" if len(t) - t.rfind(",") - 1 == 3 else ","
    else:
        dec = "." if "." in t else ""
    for sep in {",", "."} - {dec}:
        t = t.replace(sep, "")
    whole, _, frac = t.partition(dec) if dec else (t, "", "")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    return sign + whole + (f".{frac}" if frac else "") + ("%" if pct else "")


def value_text(value: object) -> str:
    """The text to look for on the page for a value of any JSON type."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _squash(tokens: list[str]) -> str:
    return "".join(tokens).replace("-", "")


def parse_date(text: str) -> date | None:
    """A calendar date written in any common way, or None. Requires a digit and a day/month/year structure."""
    t = text.strip().strip(_PUNCT)
    if not any(c.isdigit() for c in t) or len(t) < 6 or len(t) > 40:
        return None
    if _NUM.match(t.replace(" ", "")) and not _DATE_SEPARATORS.search(t):
        return None  # a plain number is not a date
    try:
        from dateutil import parser

        dt = parser.parse(t, fuzzy=False, dayfirst=False, default=datetime(1, 1, 1))
    except (ValueError, OverflowError, TypeError):
        return None
    return None if dt.year == 1 else dt.date()


def _page_canon(table: WordTable) -> list[str]:
    return [canonical(t) for t in table.texts]


def locate(value: object, table: WordTable, near: BBox | None = None, *, model_prob: float | None = None) -> Located:
    """Find ``value`` on a page (its words ``table``). ``near``: the model's box for it (BBox contract), if any.

    ``model_prob``: the model's own probability for the value's tokens (0–1), folded into the confidence."""
    text = value_text(value)
    wanted = [c for c in (canonical(t) for t in text.split()) if c]
    if not wanted or len(table) == 0:
        return _unverified(near)
    page = _page_canon(table)
    spans = _exact_spans(wanted, page)
    if not spans:
        d = parse_date(text)
        if d is not None:
            spans = _date_spans(d, table.texts)
    score = 1.0
    if not spans:
        spans, score = _fuzzy_spans(wanted, page)
    if not spans:
        return _unverified(near)
    best = min(spans, key=lambda s: _distance(_span_box(table, s), near))
    box = _span_box(table, best)
    elsewhere = near is not None and _distance(box, near) > NEAR_DISTANCE and box.iou(near) == 0
    status: Status = "verified" if score == 1.0 and not elsewhere else "approximate"
    ocr_conf = float(np.mean(table.conf[list(best)])) if table.source == "ocr" else 1.0
    conf = score * ocr_conf * (0.75 if elsewhere else 1.0)
    if model_prob is not None:
        conf *= 0.5 + 0.5 * max(0.0, min(1.0, model_prob))
    return Located(status=status, bbox=box, confidence=round(conf, 4),
                   matched_text=" ".join(table.texts[i] for i in best), word_indices=best, match_score=score)


def _unverified(near: BBox | None) -> Located:
    return Located(status="unverified", bbox=near, confidence=0.0, matched_text=None)


def _exact_spans(wanted: list[str], page: list[str]) -> list[tuple[int, ...]]:
    """Word index runs whose squashed canonical text equals the value's (hyphenation and spacing ignored)."""
    target = _squash(wanted)
    if not target:
        return []
    out = []
    for i, tok in enumerate(page):
        first = tok.replace("-", "")
        if not first or not target.startswith(first[: len(target)]):
            continue
        acc, j = "", i
        while j < len(page) and len(acc) < len(target):
            acc += page[j].replace("-", "")
            j += 1
            if not target.startswith(acc):
                break
        if acc == target:
            out.append(tuple(range(i, j)))
    return out


def _date_spans(d: date, texts: list[str]) -> list[tuple[int, ...]]:
    out = []
    for n in (1, 3, 2, 4):
        for i in range(len(texts) - n + 1):
            window = texts[i:i + n]
            if any(c.isdigit() for c in "".join(window)) and parse_date(" ".join(window)) == d:
                out.append(tuple(range(i, i + n)))
        if out:
            return out
    return out


def _fuzzy_spans(wanted: list[str], page: list[str]) -> tuple[list[tuple[int, ...]], float]:
    target = _squash(wanted)
    best: list[tuple[int, ...]] = []
    best_ratio = 0.0
    n = len(wanted)
    first_chars = {target[0]} if target else set()
    for length in range(max(1, n - 1), n + 2):
        for i in range(len(page) - length + 1):
            if not page[i] or (page[i][0] not in first_chars and length > 1 and n > 1 and i + 1 < len(page)
                               and not page[i + 1].startswith(target[:2])):
                continue
            cand = _squash(page[i:i + length])
            if abs(len(cand) - len(target)) > max(2, len(target) // 4):
                continue
            r = SequenceMatcher(None, target, cand, autojunk=False).ratio()
            if r > best_ratio + 1e-9:
                best, best_ratio = [tuple(range(i, i + length))], r
            elif abs(r - best_ratio) <= 1e-9 and r > 0:
                best.append(tuple(range(i, i + length)))
    if best_ratio < FUZZY_MIN:
        return [], 0.0
    return best, round(best_ratio, 4)


def _span_box(table: WordTable, span: tuple[int, ...]) -> BBox:
    b = table.boxes[list(span)]
    return BBox(x0=float(b[:, 0].min()), y0=float(b[:, 1].min()), x1=float(b[:, 2].max()), y1=float(b[:, 3].max()))


def _distance(box: BBox, near: BBox | None) -> float:
    if near is None:
        return 0.0
    (ax, ay), (bx, by) = box.center(), near.center()
    return math.hypot(ax - bx, ay - by)
