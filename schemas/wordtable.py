"""Words of one page in columns — how ingest, the catalog and the verifier move them in bulk.

A page has hundreds of words; as pydantic ``Word`` objects they cost ~10 µs each to pickle, validate and
store, which would cap ingest near 100 pages/s. Columns (texts + a float32 box array) cost almost nothing;
``words()`` builds the boundary models when a caller wants them.

Besides text, box and confidence, each word carries its ``line`` (words of one printed line share an id; ids
grow in reading order) and, for OCR words, the x-positions of its characters (``edges``: ``len(text) + 1``
fractions of the word box's width per word, flattened), so a value that is part of a word gets the box of
exactly its characters."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from schemas.coords import BBox
from schemas.documents import Word, WordSource

_MAGIC_V1 = b"PLW1"
_MAGIC = b"PLW2"
_SEP = "\x1f"  # unit separator: never inside a word (words are split on whitespace/control chars)
_Q = 65535.0  # box fractions stored as uint16: 1/65535 of a page (~0.01 pt on A4)


def infer_lines(boxes: np.ndarray) -> np.ndarray:
    """Line ids for words in reading order (n, 4 boxes) when the source gave none: a word starts a new line
    when its vertical centre leaves the previous word's extent or it goes back to the left."""
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int32)
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    same = np.zeros(n, bool)
    same[1:] = (cy[1:] >= boxes[:-1, 1]) & (cy[1:] <= boxes[:-1, 3]) & (boxes[1:, 0] >= boxes[:-1, 0])
    return np.cumsum(~same).astype(np.int32) - 1


@dataclass(frozen=True, eq=False)
class WordTable:
    """``texts`` (n), ``boxes`` (n, 4) float32 in the BBox contract, ``conf`` (n,) float32 in 0–1,
    ``lines`` (n,) int32 line ids (inferred from the boxes when not given), ``edges``: None, or float32 of
    ``sum(len(t) + 1)`` character edges as fractions (0–1) of each word box's width."""

    texts: list[str]
    boxes: np.ndarray
    conf: np.ndarray
    source: WordSource
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    edges: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.lines) != len(self.texts):
            object.__setattr__(self, "lines", infer_lines(np.asarray(self.boxes).reshape(-1, 4)))
        if self.edges is not None and len(self.edges) != sum(len(t) + 1 for t in self.texts):
            raise ValueError("edges must hold len(text) + 1 values per word")

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def empty(cls, source: WordSource = "text_layer") -> WordTable:
        return cls([], np.zeros((0, 4), np.float32), np.zeros(0, np.float32), source, np.zeros(0, np.int32))

    @classmethod
    def from_words(cls, words: Sequence[Word], source: WordSource) -> WordTable:
        return cls([w.text for w in words],
                   np.array([w.bbox.as_list() for w in words], np.float32).reshape(-1, 4),
                   np.array([w.confidence for w in words], np.float32), source)

    def edge_offsets(self) -> np.ndarray:
        """Start of each word's edges in ``edges`` (n + 1,)."""
        return np.concatenate([[0], np.cumsum([len(t) + 1 for t in self.texts])]).astype(np.int64)

    def take(self, idx: Sequence[int] | np.ndarray) -> WordTable:
        """The words at ``idx``, in that order, with all their columns."""
        ix = np.asarray(idx, dtype=np.int64)
        edges = None
        if self.edges is not None:
            off = self.edge_offsets()
            edges = np.concatenate([self.edges[off[i]:off[i + 1]] for i in ix.tolist()] or [np.zeros(0)])
            edges = edges.astype(np.float32)
        return WordTable([self.texts[i] for i in ix.tolist()], self.boxes[ix], self.conf[ix], self.source,
                         self.lines[ix], edges)

    def words(self) -> list[Word]:
        out = []
        for text, b, c in zip(self.texts, self.boxes.tolist(), self.conf.tolist(), strict=True):
            box = BBox.clamped(*b)
            if box is not None:
                out.append(Word(text=text, bbox=box, confidence=min(1.0, max(0.0, c)), source=self.source))
        return out

    def encode(self) -> bytes:
        """Compact, versioned blob: texts, uint16 boxes, uint8 confidences, uint32 line ids, uint8 character
        edges (when present), zlib-compressed."""
        joined = _SEP.join(self.texts)
        if joined.count(_SEP) != max(0, len(self.texts) - 1):  # a separator inside a word: blank it out
            joined = _SEP.join(t.replace(_SEP, " ") for t in self.texts)
        texts = joined.encode()
        n = len(self.texts)
        q = np.rint(np.clip(self.boxes, 0, 1) * _Q).astype("<u2").tobytes()
        c = np.rint(np.clip(self.conf, 0, 1) * 255).astype(np.uint8).tobytes()
        lines = np.asarray(self.lines, "<u4").tobytes()
        edges = b"" if self.edges is None else np.rint(np.clip(self.edges, 0, 1) * 255).astype(np.uint8).tobytes()
        head = _MAGIC + struct.pack("<BIIB", 1 if self.source == "ocr" else 0, n, len(texts),
                                    0 if self.edges is None else 1)
        return zlib.compress(head + texts + q + c + lines + edges, 1)

    @classmethod
    def decode(cls, blob: bytes) -> WordTable:
        raw = zlib.decompress(blob)
        magic = raw[:4]
        if magic == _MAGIC_V1:
            is_ocr, n, tlen = struct.unpack_from("<BII", raw, 4)
            has_edges = 0
            pos = 4 + struct.calcsize("<BII")
        elif magic == _MAGIC:
            is_ocr, n, tlen, has_edges = struct.unpack_from("<BIIB", raw, 4)
            pos = 4 + struct.calcsize("<BIIB")
        else:
            raise ValueError("not a PageLens word blob")
        texts = raw[pos:pos + tlen].decode().split(_SEP) if n else []
        pos += tlen
        boxes = np.frombuffer(raw, "<u2", count=4 * n, offset=pos).reshape(n, 4).astype(np.float32) / _Q
        pos += 8 * n
        conf = np.frombuffer(raw, np.uint8, count=n, offset=pos).astype(np.float32) / 255.0
        pos += n
        lines, edges = np.zeros(0, np.int32), None
        if magic == _MAGIC:
            lines = np.frombuffer(raw, "<u4", count=n, offset=pos).astype(np.int32)
            pos += 4 * n
            if has_edges:
                m = sum(len(t) + 1 for t in texts)
                edges = np.frombuffer(raw, np.uint8, count=m, offset=pos).astype(np.float32) / 255.0
        return cls(texts, boxes, conf, "ocr" if is_ocr else "text_layer", lines, edges)
