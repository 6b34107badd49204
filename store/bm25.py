"""The page's lexical index: one sparse vector per page holding three fields in disjoint term spaces, so one
dot product (with the collection's IDF modifier) scores them all, BM25F-style:

- ``words``: Qdrant's own BM25 (qdrant-edge-py ``Bm25``): word tokenizer, English Snowball stemmer, stop-words,
  lowercasing, ASCII folding ("Café" matches "cafe", "running" matches "runs"). Body text and caption.
- ``raw``: the text's whitespace tokens as written, lowercased, outer punctuation stripped: identifiers,
  section numbers and code keep their shape (``plot.default``, ``get_text``, ``13.1``, ``R-intro``), and
  stop-words count (``while``; "What is R?"). Exact forms thus score above stemmed look-alikes.
- ``heading``: the stemmed terms of the page's headings (outline titles pointing at it, larger-font lines),
  weighted low: a word shared with a heading is a hint, not a match;
- ``title``: each heading as one term (its set of stemmed terms), so a question that *is* a section title
  ranks the page that section starts on above pages that merely mention it.

Document vectors carry BM25 term-frequency weights (k, b, avg_len below); the IDF comes from the collection at
query time, so the weights stay valid as the corpus grows. The query vector weighs the fields (``RAW_WEIGHT``,
``HEADING_WEIGHT``, ``TITLE_WEIGHT``): measured with ``pagelens eval retrieval`` (BENCHMARKS.md). The same
vectors work against a Qdrant server (same tokenizer, same hashing)."""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from functools import lru_cache

import qdrant_edge as qe

from store.vectors import SparseVec

K1 = 1.2
B = 0.75
AVG_LEN = 300.0  # words on a typical page of the corpus (octave.pdf: ~320, R-intro: ~290)
LANGUAGE = "english"
RAW_WEIGHT = 0.5
HEADING_WEIGHT = 0.1
TITLE_WEIGHT = 2.0
PAIR_WEIGHT = 1.0
VERSION = f"qdrant-edge-bm25:{LANGUAGE}:k{K1}:b{B}:avg{AVG_LEN:g}+raw+pairs+heading+title"
_SECTION_LABEL = re.compile(r"^\s*(?:[A-Z]\.)?\d+(?:\.\d+)*\.?\s+")  # "13.6 ", "A.2 ", "2. "
_PUNCT = "\"'`.,;:!?()[]{}<>«»“”‘’*"
_U32 = 0xFFFFFFFF
_ALNUM = re.compile(r"[^\W_]")  # a letter or digit (str.isalnum)
_RAW_CRC = zlib.crc32(b"raw\0")  # crc32(prefix + data) == crc32(data, crc32(prefix)): the prefix hashed once
_PAIR_CRC = zlib.crc32(b"pair\0")


@lru_cache(maxsize=1)
def _model() -> qe.Bm25:
    return qe.Bm25(qe.Bm25Config(k=K1, b=B, avg_len=AVG_LEN, language=LANGUAGE, lowercase=True,
                                 ascii_folding=True))


def raw_tokens(text: str) -> list[str]:
    """Whitespace tokens, lowercased, outer punctuation stripped; kept when they hold a letter or digit."""
    stripped = [tok.strip(_PUNCT) for tok in text.lower().split()]
    return [tok for tok in stripped if tok and _ALNUM.search(tok)]


def _raw_index(token: str) -> int:
    return zlib.crc32(token.encode("utf-8"), _RAW_CRC) & _U32


def _pair_index(a: str, b: str) -> int:
    return zlib.crc32(b"\0" + b.encode("utf-8"), zlib.crc32(a.encode("utf-8"), _PAIR_CRC)) & _U32


def _heading_index(word_index: int) -> int:
    """The heading field's copy of a word term: a bijection of u32 (xor, then an odd multiplier), so heading
    terms never share an index with body terms (nor their IDF)."""
    return ((word_index ^ 0x5BD1E995) * 0x9E3779B1) & _U32


def _title_index(text: str) -> int | None:
    """One term for a whole heading: its set of stemmed terms (section number dropped), so a question that *is*
    a heading ("Profiling", "How do I convert factors to numeric?") matches the page it heads and nothing
    else, while a question that merely shares a word with a heading gets nothing from it."""
    found = sorted(terms(_SECTION_LABEL.sub("", text, count=1)))
    if not found:
        return None
    return zlib.crc32(b"title\0" + b",".join(str(t).encode() for t in found)) & _U32


def _merge(*parts: dict[int, float]) -> SparseVec:
    out: dict[int, float] = {}
    for part in parts:
        for i, v in part.items():
            out[i] = out.get(i, 0.0) + v
    keys = sorted(out)
    return SparseVec(indices=keys, values=[out[i] for i in keys])


def page_text(words: Sequence[str], caption: str | None = None) -> str:
    """The text BM25 indexes for a page: its words, then its caption."""
    text = " ".join(words)
    return f"{text}\n{caption}" if caption else text


def page_vector(words: Sequence[str], caption: str | None = None, headings: Sequence[str] = ()) -> SparseVec:
    """A page's sparse vector from its words, caption and headings (the readers compute it for new pages, the
    caption pass again once the caption exists)."""
    return embed_document(page_text(words, caption), headings)


def embed_document(text: str, headings: Sequence[str] = ()) -> SparseVec:
    """A page's sparse vector: ``text`` (words + caption) in the words and raw fields, ``headings`` in the
    heading field. Runs for every page ingested, so the raw and pair terms are counted and weighted with numpy
    (the same indices as ``_raw_index`` / ``_pair_index``, BM25 term-frequency weights, the fields summed as
    ``_merge`` does)."""
    import numpy as np

    v = _model().embed_document(text)
    raw = raw_tokens(text)
    enc = [t.encode("utf-8") for t in raw]
    crc = zlib.crc32
    norm = K1 * (1 - B + B * len(raw) / AVG_LEN)
    indices = [np.asarray(v.indices, np.int64)]
    values = [np.asarray(v.values, np.float64)]
    firsts = [crc(e, _PAIR_CRC) for e in enc[:-1]]
    for ids in ([crc(e, _RAW_CRC) for e in enc], [crc(b"\0" + e, f) for f, e in zip(firsts, enc[1:], strict=True)]):
        if ids:
            terms_, counts = np.unique(np.array(ids, np.int64), return_counts=True)
            indices.append(terms_)
            values.append(counts * (K1 + 1) / (counts + norm))
    if headings:
        h = _model().embed_document("\n".join(headings))
        indices.append(np.array([_heading_index(int(i)) for i in h.indices], np.int64))
        values.append(np.asarray(h.values, np.float64))
        titles = sorted({t for t in map(_title_index, headings) if t is not None})
        indices.append(np.array(titles, np.int64))
        values.append(np.ones(len(titles)))
    keys, where = np.unique(np.concatenate(indices), return_inverse=True)
    return SparseVec(indices=keys.tolist(), values=np.bincount(where, weights=np.concatenate(values)).tolist())


def embed_query(text: str) -> SparseVec:
    """The query vector: the question's distinct stemmed non-stop-word terms (weight 1) and their heading-field
    copies (HEADING_WEIGHT), its distinct raw tokens (RAW_WEIGHT), and the whole question as a title
    (TITLE_WEIGHT)."""
    words = {int(i): 1.0 for i in terms(text)}  # cached: the title term and the hit words reuse it
    head = {_heading_index(i): HEADING_WEIGHT for i in words}
    tokens = raw_tokens(text)
    raw = {_raw_index(t): RAW_WEIGHT for t in dict.fromkeys(tokens)}
    pairs = {_pair_index(a, b): PAIR_WEIGHT for a, b in itertools.pairwise(tokens)}
    title = _title_index(text)
    return _merge(words, head, raw, pairs, {title: TITLE_WEIGHT} if title is not None else {})


@lru_cache(maxsize=65536)
def terms(text: str) -> frozenset[int]:
    """The hashed terms of ``text`` (the sparse indices BM25 gives it): for matching words to a question."""
    return frozenset(_model().embed_query(text).indices)
