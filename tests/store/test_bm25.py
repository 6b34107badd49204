"""The BM25 choices (Qdrant's own tokenizer): stemming, English stop-words, case and ASCII folding."""

from __future__ import annotations

from pathlib import Path

from schemas.ids import point_id
from store import bm25
from store.qdrant_edge import EdgeIndex
from store.vectors import PagePoint, PageQuery


def test_stemming_stopwords_and_folding() -> None:
    assert bm25.terms("running") == bm25.terms("runs") == bm25.terms("RUN")
    assert bm25.terms("the") == frozenset() and bm25.terms("of and to") == frozenset()
    assert bm25.terms("café résumé") == bm25.terms("cafe resume")
    assert bm25.terms("regression") != bm25.terms("progression")


def test_document_weights_and_query_vectors() -> None:
    doc = bm25.embed_document("model models modelling of linear regression")
    q = bm25.embed_query("linear model")
    words = set(bm25.terms("linear model"))
    assert words <= set(doc.indices), "the stemmed words of the question are in the page's vector"
    weights = dict(zip(doc.indices, doc.values, strict=True))
    model_term = next(iter(bm25.terms("model")))
    linear_term = next(iter(bm25.terms("linear")))
    assert weights[model_term] > weights[linear_term] > 0, "term frequency raises the weight (saturating)"
    qw = dict(zip(q.indices, q.values, strict=True))
    assert all(qw[t] == 1.0 for t in words) and len(q.indices) == len(set(q.indices))
    assert bm25.VERSION.startswith("qdrant-edge-bm25:english")


def test_raw_tokens_keep_identifiers_numbers_and_stopwords() -> None:
    assert bm25.raw_tokens("Use plot.default() or get_text, see §13.1 (R-intro). While...") == [
        "use", "plot.default", "or", "get_text", "see", "§13.1", "r-intro", "while"]
    assert bm25.raw_tokens("-- ... ()") == []


def _rank(pages: dict[str, tuple[str, list[str]]], question: str, tmp_path: Path) -> list[str]:
    """Page names ranked for ``question`` by a real Qdrant Edge index (BM25 alone)."""
    index = EdgeIndex(tmp_path / f"q{len(list(tmp_path.iterdir()))}")
    try:
        index.upsert([PagePoint(id=point_id("d" * 64, n), doc_id="d" * 64, page=n, collection="c",
                                text=bm25.embed_document(text, headings))
                      for n, (text, headings) in enumerate(pages.values(), 1)])
        names = list(pages)
        return [names[s.page - 1] for s in index.query(PageQuery(dense={}, sparse=bm25.embed_query(question),
                                                                 limit=len(pages)))]
    finally:
        index.close()


FILLER = " ".join(f"filler{i}" for i in range(60))


def test_identifiers_stopwords_titles_and_phrases_rank_the_right_page(tmp_path: Path) -> None:
    # an identifier: its exact form beats the same words apart
    assert _rank({"apart": (f"the plot default method draws {FILLER}", []),
                  "ident": (f"plot.default draws {FILLER}", [])}, "plot.default", tmp_path)[0] == "ident"
    # a stop-word is a word a user may look for ("while" loops): found, where stemmed BM25 alone finds nothing
    assert _rank({"loop": (f"a while loop repeats {FILLER}", []), "other": (f"loops repeat {FILLER}", [])},
                 "while", tmp_path)[0] == "loop"
    # a question that is a section title: the page the section starts on, above pages that say it more often
    pages = {"mentions": (f"profiling profiling profiling code {FILLER}", []),
             "section": (f"profiling measures where time goes {FILLER}", ["13.6 Profiling"])}
    assert _rank(pages, "Profiling", tmp_path)[0] == "section"
    # a copied phrase: the page with those words in that order
    assert _rank({"shuffled": (f"level top the workspace {FILLER}", []),
                  "phrase": (f"the top level workspace {FILLER}", [])}, "top level workspace",
                 tmp_path)[0] == "phrase"


def test_a_word_shared_with_a_heading_is_only_a_hint(tmp_path: Path) -> None:
    """Body-text questions are not pulled to pages whose heading shares one of their words."""
    pages = {"heading": (f"unrelated text here {FILLER}", ["Matrix Arithmetic"]),
             "body": (f"the inverse of a matrix is computed {FILLER}", [])}
    assert _rank(pages, "inverse of a matrix", tmp_path)[0] == "body"
