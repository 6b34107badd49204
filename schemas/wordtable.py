"""Words of one page in columns — how ingest, the catalog and the verifier move them in bulk.

A page has hundreds of words; as pydantic ``Word`` objects they cost ~10 µs each to pickle, validate and
store, which would cap ingest near 100 pages/s. Columns (texts + a float32 box array) cost almost nothing;
``words()`` builds the boundary models when a caller wants them."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.coords import BBox
from schemas.documents import Word, WordSource

_MAGIC = b"PLW1"
_SEP = "\x1f"  # unit separator: never inside a word (words are split on whitespace/control chars)
_Q = 65535.0  # box fractions stored as uint16: 1/65535 of a page (~0.01 pt on A4)


@dataclass(frozen=True, eq=False)
class WordTable:
    """``texts`` (n), ``boxes`` (n, 4) float32 in the BBox contract, ``conf`` (n,) float32 in 0–1."""

    texts: list[str]
    boxes: np.ndarray
    conf: np.ndarray
    source: WordSource

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def empty(cls, source: WordSource = "text_layer") -> WordTable:
        return cls([], np.zeros((0, 4), np.float32), np.zeros(0, np.float32), source)

    @classmethod
    def from_words(cls, words: Sequence[Word], source: WordSource) -> WordTable:
        return cls([w.text for w in words],
                   np.array([w.bbox.as_list() for w in words], np.float32).reshape(-1, 4),
                   np.array([w.confidence for w in words], np.float32), source)

    def words(self) -> list[Word]:
        out = []
        for text, b, c in zip(self.texts, self.boxes.tolist(), self.conf.tolist(), strict=True):
            box = BBox.clamped(*b)
            if box is not None:
                out.append(Word(text=text, bbox=box, confidence=min(1.0, max(0.0, c)), source=self.source))
        return out

    def encode(self) -> bytes:
        """Compact, versioned blob: texts, uint16 boxes, uint8 confidences, zlib-compressed."""
        joined = _SEP.join(self.texts)
        if joined.count(_SEP) != max(0, len(self.texts) - 1):  # a separator inside a word: blank it out
            joined = _SEP.join(t.replace(_SEP, " ") for t in self.texts)
        texts = joined.encode()
        q = np.rint(np.clip(self.boxes, 0, 1) * _Q).astype("<u2").tobytes()
        c = np.rint(np.clip(self.conf, 0, 1) * 255).astype(np.uint8).tobytes()
        head = _MAGIC + struct.pack("<BII", 1 if self.source == "ocr" else 0, len(self.texts), len(texts))
        return zlib.compress(head + texts + q + c, 1)

    @classmethod
    def decode(cls, blob: bytes) -> WordTable:
        raw = zlib.decompress(blob)
        if raw[:4] != _MAGIC:
            raise ValueError("not a PageLens word blob")
        is_ocr, n, tlen = struct.unpack_from("<BII", raw, 4)
        pos = 4 + struct.calcsize("<BII")
        texts = raw[pos:pos + tlen].decode().split(_SEP) if n else []
        pos += tlen
        boxes = np.frombuffer(raw, "<u2", count=4 * n, offset=pos).reshape(n, 4).astype(np.float32) / _Q
        conf = np.frombuffer(raw, np.uint8, count=n, offset=pos + 8 * n).astype(np.float32) / 255.0
        return cls(texts, boxes, conf, "ocr" if is_ocr else "text_layer")
