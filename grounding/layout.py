"""The page's words in *column order*: a second reading of the page for the verifier, from the words' own geometry.

Reading order interleaves the columns of a table or form: a value printed over two lines of one cell
(``Brown Rudnick`` / ``Freed & Gesmer``) has the other columns' words between its lines. Here each printed line is
cut into segments at wide gaps (the cells of that line), and a segment is continued by the segment right below
it in the same column (overlapping or left-aligned, a small vertical gap): each chain of segments is one cell or
column run, and the page is read chain after chain. A value not found in reading order is looked for in this
order too; its boxes stay one per printed line.

No model: the boxes and line ids the words already have (``schemas.wordtable``)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from schemas.wordtable import WordTable

GAP_HEIGHTS = 1.2     # a gap wider than this many line heights splits a printed line into cells
BELOW_HEIGHTS = 0.9   # a segment continues the one above when the vertical gap is at most this many heights
MIN_OVERLAP = 0.5     # ... and their x-ranges overlap by this share of the narrower one (or their left edges align)
ALIGN_HEIGHTS = 1.0   # left edges within this many heights count as aligned
MAX_WORDS = 20_000    # beyond this a page is read in reading order only (a column order costs little, but bound it)

_CACHE: weakref.WeakKeyDictionary[WordTable, ColumnOrder] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ColumnOrder:
    """``table``: the words in column order (a ``WordTable.take`` of the page's); ``index[k]``: the page's word
    index of ``table``'s word ``k``. ``changed``: whether the order differs from reading order at all."""

    table: WordTable
    index: np.ndarray
    changed: bool
    chain: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # chain id of each word of ``table``

    def one_chain(self, words: Sequence[int]) -> bool:
        """Whether ``table``'s words ``words`` lie in one chain (a match must not run from one cell into the next
        chain, which reading order does not put there either)."""
        return len(words) == 0 or len({int(self.chain[w]) for w in words}) == 1


def column_order(table: WordTable) -> ColumnOrder:
    """The column order of ``table`` (cached while the table lives)."""
    got = _CACHE.get(table)
    if got is None:
        got = _build(table)
        _CACHE[table] = got
    return got


def _segments(table: WordTable) -> list[np.ndarray]:
    """Runs of consecutive words on one printed line, cut where the gap is wide: the cells of each line."""
    n = len(table)
    boxes, lines = table.boxes, table.lines
    segs: list[np.ndarray] = []
    start = 0
    for i in range(1, n + 1):
        cut = i == n or lines[i] != lines[i - 1]
        if not cut:
            h = max(float(boxes[i - 1, 3] - boxes[i - 1, 1]), float(boxes[i, 3] - boxes[i, 1]))
            gap = float(boxes[i, 0] - boxes[i - 1, 2])
            cut = gap > GAP_HEIGHTS * h or gap < -h  # a wide gap, or a jump back to the left
        if cut:
            segs.append(np.arange(start, i))
            start = i
    return segs


def _build(table: WordTable) -> ColumnOrder:
    n = len(table)
    identity = np.arange(n, dtype=np.int64)
    if n < 3 or n > MAX_WORDS:
        return ColumnOrder(table, identity, False)
    segs = _segments(table)
    b = np.array([[table.boxes[s, 0].min(), table.boxes[s, 1].min(), table.boxes[s, 2].max(),
                   table.boxes[s, 3].max()] for s in segs], np.float64)
    h = np.array([float(np.median(table.boxes[s, 3] - table.boxes[s, 1])) for s in segs])
    by_top = np.argsort(b[:, 1], kind="stable")
    nxt = np.full(len(segs), -1)
    prev_score = np.full(len(segs), np.inf)
    for pos, si in enumerate(by_top.tolist()):
        best, best_d = -1, np.inf
        for ti in by_top[pos + 1:].tolist():
            gap = b[ti, 1] - b[si, 3]
            height = max(h[si], h[ti])
            if gap > BELOW_HEIGHTS * height:
                break
            if b[ti, 1] < b[si, 1] + 0.5 * h[si]:  # on the same printed line, not below
                continue
            overlap = min(b[si, 2], b[ti, 2]) - max(b[si, 0], b[ti, 0])
            narrow = max(1e-9, min(b[si, 2] - b[si, 0], b[ti, 2] - b[ti, 0]))
            if overlap / narrow < MIN_OVERLAP and abs(b[si, 0] - b[ti, 0]) > ALIGN_HEIGHTS * height:
                continue
            d = gap + abs(b[si, 0] - b[ti, 0])
            if d < best_d:
                best, best_d = ti, d
        if best >= 0 and best_d < prev_score[best]:  # each segment continues at most one above it: the nearest
            if (old := np.flatnonzero(nxt == best)).size:
                nxt[old] = -1
            nxt[si], prev_score[best] = best, best_d
    has_prev = np.zeros(len(segs), bool)
    has_prev[nxt[nxt >= 0]] = True
    heads = [i for i in range(len(segs)) if not has_prev[i]]  # in reading order of their first word
    order: list[np.ndarray] = []
    chains: list[np.ndarray] = []
    seen = np.zeros(len(segs), bool)
    for c, head in enumerate(heads):
        i = head
        while i >= 0 and not seen[i]:
            seen[i] = True
            order.append(segs[i])
            chains.append(np.full(len(segs[i]), c, np.int64))
            i = int(nxt[i])
    index = np.concatenate(order).astype(np.int64) if order else identity
    if len(index) != n:  # cannot happen (every segment is in one chain), but never lose a word
        return ColumnOrder(table, identity, False)
    changed = bool((index != identity).any())
    return ColumnOrder(table.take(index) if changed else table, index, changed, np.concatenate(chains))
