"""A page's words as one stream of normalised characters, mapped back to where each character came from.

The verifier aligns a value against this stream, across word and line boundaries (an address over four lines,
a date glued into ``Date:11/01/2019``), and turns the matched characters back into boxes: from the OCR
characters' own edges on scanned pages, by character offset inside text-layer words — one box per printed line.

Built once per page (cached on the WordTable) with numpy look-up tables, so a 100,000-word page costs tens of
milliseconds, not seconds."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from grounding.normalise import CJK, DIGIT, ascii_tables, char_norm
from schemas.coords import BBox
from schemas.wordtable import WordTable

_CACHE: weakref.WeakKeyDictionary[WordTable, PageStream] = weakref.WeakKeyDictionary()
_NUMBER_INNER = frozenset(",.'’")


@dataclass(frozen=True)
class PageStream:
    """``text``: the normalised characters; ``src[k]``: position in ``orig`` (the words joined by single
    spaces) of the character that produced ``text[k]``; ``kind[k]``: LETTER, DIGIT or CJK before OCR
    confusions were folded; ``word_start``: where each word starts in ``orig``."""

    text: str
    src: np.ndarray
    kind: np.ndarray
    orig: str
    word_start: np.ndarray
    ocr: bool

    def clean_boundary(self, p: int) -> bool:
        """Is there a word boundary between ``text[p-1]`` and ``text[p]``? Yes at either end, between words,
        at a letter/digit change, around CJK characters, and at punctuation inside a word — except the
        ',', '.' and "'" inside a number."""
        if p <= 0 or p >= len(self.text):
            return True
        ka, kb = int(self.kind[p - 1]), int(self.kind[p])
        if ka == CJK or kb == CJK or ka != kb:
            return True
        a, b = int(self.src[p - 1]), int(self.src[p])
        if b <= a + 1:
            return False
        gap = self.orig[a + 1:b]
        return not (ka == DIGIT and " " not in gap and all(c in _NUMBER_INNER for c in gap))

    def original(self, start: int, end: int) -> str:
        """The page's own text behind stream characters [start, end)."""
        return self.orig[int(self.src[start]):int(self.src[end - 1]) + 1]


def stream_of(table: WordTable) -> PageStream:
    """The page stream of ``table`` (cached while the table lives)."""
    s = _CACHE.get(table)
    if s is None:
        s = _build(table)
        _CACHE[table] = s
    return s


def _build(table: WordTable) -> PageStream:
    ocr = table.source == "ocr"
    orig = " ".join(table.texts)
    lens = np.fromiter((len(t) for t in table.texts), np.int64, len(table.texts))
    word_start = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]).astype(np.int64) if len(lens) else \
        np.zeros(0, np.int64)
    codes = np.frombuffer(orig.encode("utf-32-le"), np.uint32)
    lut_code, lut_kind = ascii_tables(ocr)
    is_ascii = codes < 128
    if is_ascii.all():
        out = lut_code[codes]
        keep = np.flatnonzero(out)
        text = out[keep].astype("<u4").tobytes().decode("utf-32-le")
        return PageStream(text, keep, lut_kind[codes[keep]], orig, word_start, ocr)
    chars: list[str] = []
    src: list[int] = []
    kinds: list[int] = []
    for pos, c in enumerate(orig):
        s, k = char_norm(c, ocr)
        if s:
            chars.append(s)
            src += [pos] * len(s)
            kinds += k
    return PageStream("".join(chars), np.array(src, np.int64), np.array(kinds, np.int8), orig, word_start, ocr)


def words_of(stream: PageStream, start: int, end: int) -> list[int]:
    """The indices of the words behind stream characters [start, end)."""
    if end <= start:
        return []
    pos = stream.src[start:end]
    return np.unique(np.searchsorted(stream.word_start, pos, side="right") - 1).tolist()


def match_boxes(table: WordTable, stream: PageStream, start: int, end: int,
                value: str = "") -> tuple[list[BBox], list[int], str]:
    """Boxes of exactly the page characters behind stream [start, end) — widened to the punctuation the value
    itself begins or ends with, when the page has it there ("library(RODBC)" keeps its ")") — one box per
    printed line, in reading order; the indices of the words touched; and the page's text of the match."""
    a, b = _with_punctuation(stream, int(stream.src[start]), int(stream.src[end - 1]) + 1, value)
    pos = np.array([p for p in range(a, b) if stream.orig[p] != " "], np.int64)
    words = np.searchsorted(stream.word_start, pos, side="right") - 1
    offs = pos - stream.word_start[words]
    edge_off = table.edge_offsets() if table.edges is not None else None
    segs: dict[int, list[float]] = {}
    order: list[int] = []
    touched: list[int] = []
    for w in np.unique(words).tolist():
        sel = words == w
        box = _sub_box(table, w, int(offs[sel].min()), int(offs[sel].max()) + 1, edge_off)
        line = int(table.lines[w])
        if line not in segs:
            segs[line] = box
            order.append(line)
        else:
            s = segs[line]
            segs[line] = [min(s[0], box[0]), min(s[1], box[1]), max(s[2], box[2]), max(s[3], box[3])]
        touched.append(w)
    boxes = [BBox.clamped(*segs[ln]) for ln in order]
    return [bx for bx in boxes if bx is not None], touched, stream.orig[a:b]


def _with_punctuation(stream: PageStream, a: int, b: int, value: str) -> tuple[int, int]:
    """Widen the page span [a, b) by the non-alphanumeric characters the value starts/ends with, where the page
    has the same ones right there (spaces between words allowed)."""
    v = value.strip()
    head = v[: len(v) - len(v.lstrip(_PUNCT_CHARS))].replace(" ", "")
    tail = v[len(v.rstrip(_PUNCT_CHARS)):].replace(" ", "")
    orig = stream.orig
    for c in reversed(head):
        p = a - 1
        while p >= 0 and orig[p] == " " and a - p <= 2:
            p -= 1
        if p >= 0 and orig[p] == c:
            a = p
        else:
            break
    for c in tail:
        p = b
        while p < len(orig) and orig[p] == " " and p - b <= 1:
            p += 1
        if p < len(orig) and orig[p] == c:
            b = p + 1
        else:
            break
    return a, b


_PUNCT_CHARS = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum()) + " “”‘’«»–—…·•€£¥₹"


def _sub_box(table: WordTable, w: int, a: int, b: int, edge_off: np.ndarray | None) -> list[float]:
    """Box of characters [a, b) of word ``w``."""
    x0, y0, x1, y1 = (float(v) for v in table.boxes[w])
    n = len(table.texts[w])
    if (a, b) == (0, n) or n == 0:
        return [x0, y0, x1, y1]
    if edge_off is not None and table.edges is not None:
        e = table.edges[int(edge_off[w]):int(edge_off[w + 1])]
        fa, fb = float(e[a]), float(e[b])
    else:
        fa, fb = a / n, b / n
    if (y1 - y0) > 3 * (x1 - x0) and n > 2:  # a vertical word (page fractions, so a clear margin)
        return [x0, y0 + fa * (y1 - y0), x1, y0 + fb * (y1 - y0)]
    if _rtl(table.texts[w]):
        fa, fb = 1 - fb, 1 - fa
    return [x0 + fa * (x1 - x0), y0, x0 + fb * (x1 - x0), y1]


def _rtl(text: str) -> bool:
    import unicodedata

    for c in text:
        d = unicodedata.bidirectional(c)
        if d in ("R", "AL"):
            return True
        if d == "L":
            return False
    return False
