"""BM25 sparse vectors with Qdrant's own BM25 (qdrant-edge-py ``Bm25``): Qdrant's word tokenizer, English
Snowball stemmer, English stop-words, lowercasing and ASCII folding ("Café" matches "cafe"). No tokenizer of
ours. Document vectors carry BM25 term-frequency weights (k, b, avg_len below); the collection's IDF modifier
supplies the inverse document frequency at query time, so the weights stay valid as the corpus grows.

The same vectors work against a Qdrant server (same tokenizer, same hashing)."""

from __future__ import annotations

from functools import lru_cache

import qdrant_edge as qe

from store.vectors import SparseVec

K1 = 1.2
B = 0.75
AVG_LEN = 300.0  # words on a typical page of the corpus (octave.pdf: ~320, R-intro: ~290)
LANGUAGE = "english"
VERSION = f"qdrant-edge-bm25:{LANGUAGE}:k{K1}:b{B}:avg{AVG_LEN:g}"


@lru_cache(maxsize=1)
def _model() -> qe.Bm25:
    return qe.Bm25(qe.Bm25Config(k=K1, b=B, avg_len=AVG_LEN, language=LANGUAGE, lowercase=True,
                                 ascii_folding=True))


def embed_document(text: str) -> SparseVec:
    """BM25 document vector of a page's text (words + caption)."""
    v = _model().embed_document(text)
    return SparseVec(indices=list(v.indices), values=[float(x) for x in v.values])


def embed_query(text: str) -> SparseVec:
    """BM25 query vector: the question's distinct stemmed non-stop-word terms, weight 1."""
    v = _model().embed_query(text)
    return SparseVec(indices=list(v.indices), values=[float(x) for x in v.values])


@lru_cache(maxsize=65536)
def terms(text: str) -> frozenset[int]:
    """The hashed terms of ``text`` (the sparse indices BM25 gives it): for matching words to a question."""
    return frozenset(_model().embed_query(text).indices)
