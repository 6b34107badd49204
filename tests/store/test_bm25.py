"""The BM25 choices (Qdrant's own tokenizer): stemming, English stop-words, case and ASCII folding."""

from __future__ import annotations

from store import bm25


def test_stemming_stopwords_and_folding() -> None:
    assert bm25.terms("running") == bm25.terms("runs") == bm25.terms("RUN")
    assert bm25.terms("the") == frozenset() and bm25.terms("of and to") == frozenset()
    assert bm25.terms("café résumé") == bm25.terms("cafe resume")
    assert bm25.terms("regression") != bm25.terms("progression")


def test_document_weights_and_query_vectors() -> None:
    doc = bm25.embed_document("model models modelling of linear regression")
    q = bm25.embed_query("linear model")
    assert set(q.indices) <= set(doc.indices) and all(v == 1.0 for v in q.values)
    weights = dict(zip(doc.indices, doc.values, strict=True))
    model_term = next(iter(bm25.terms("model")))
    linear_term = next(iter(bm25.terms("linear")))
    assert weights[model_term] > weights[linear_term] > 0, "term frequency raises the weight (saturating)"
    assert bm25.VERSION.startswith("qdrant-edge-bm25:english")
