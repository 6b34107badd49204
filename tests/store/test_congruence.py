"""Congruence: the same upserts, queries, filters and deletes on Qdrant Edge (embedded) and through qdrant-client
give the same answers — in-process (``:memory:``) and over REST (``tests.qdrant_rest``: the server's routes over
real HTTP, answered by qdrant-client's local engine, since no Qdrant server runs here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from schemas.ids import point_id
from store import bm25
from store.qdrant_edge import EdgeIndex
from store.qdrant_server import ServerIndex
from store.vectors import PagePoint, PageQuery, VectorIndex
from tests.qdrant_rest import qdrant_server

DIM = 16
TEXTS = [
    "linear regression models fitted with lm", "importing data from spreadsheets and databases",
    "octave reference card matrix functions", "plotting graphics with base R", "statistical models in R",
    "reading CSV files", "matrix multiplication and inverses", "the quick brown fox", "regression diagnostics",
    "exporting data to text files as plain ascii", "probability distributions", "loops and conditional execution",
]


def _points() -> list[PagePoint]:
    rng = np.random.default_rng(7)
    pts = []
    for i, text in enumerate(TEXTS):
        doc = f"doc{i % 3}"
        v = rng.standard_normal(DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        pts.append(PagePoint(id=point_id(doc, i + 1), doc_id=doc, page=i + 1, collection="a" if i % 2 else "b",
                             text=bm25.embed_document(text), dense={"image": v.tolist()}))
    return pts


@pytest.fixture(params=["memory", "rest"])
def both(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[VectorIndex]]:
    with ExitStack() as stack:
        url = ":memory:" if request.param == "memory" else stack.enter_context(qdrant_server())[0]
        edge, server = EdgeIndex(tmp_path / "qdrant"), ServerIndex(url)
        for ix in (edge, server):
            assert ix.ensure_dense("image", DIM) is True
            assert ix.ensure_dense("image", DIM) is False
            ix.upsert(_points())
            ix.flush()
        yield [edge, server]
        edge.close()
        server.close()


def _ranked(ix: VectorIndex, q: PageQuery) -> list[tuple[float, str, int]]:
    """Results as (score, doc, page), sorted by score then id: RRF ties may come back in either order."""
    return sorted((-round(s.score, 5), s.doc_id, s.page) for s in ix.query(q))


def test_counts_and_pages(both: list[VectorIndex]) -> None:
    edge, server = both
    assert edge.count() == server.count() == len(TEXTS)
    assert edge.count("doc1") == server.count("doc1") == 4
    assert edge.pages_of("doc0") == server.pages_of("doc0") == {1, 4, 7, 10}
    assert edge.doc_ids() == server.doc_ids() == {"doc0", "doc1", "doc2"}
    assert edge.dense_dims() == server.dense_dims() == {"image": DIM}


@pytest.mark.parametrize("question", ["regression models", "data files", "matrix"])
def test_sparse_only_same_ranking_and_scores(both: list[VectorIndex], question: str) -> None:
    edge, server = both
    q = PageQuery(dense={}, sparse=bm25.embed_query(question), limit=5)
    e, s = edge.query(q), server.query(q)
    assert e, "BM25 must find something"
    assert [(x.doc_id, x.page) for x in e] == [(x.doc_id, x.page) for x in s]
    assert np.allclose([x.score for x in e], [x.score for x in s], rtol=1e-4)


def test_hybrid_rrf_and_filters_agree(both: list[VectorIndex]) -> None:
    edge, server = both
    qv = _points()[3].dense["image"]
    for kw in ({}, {"collection": "a"}, {"doc_ids": ["doc2"]}, {"collection": "b", "doc_ids": ["doc0", "doc1"]}):
        q = PageQuery(dense={"image": qv}, sparse=bm25.embed_query("regression data"), limit=6, **kw)  # type: ignore[arg-type]
        e, s = _ranked(edge, q), _ranked(server, q)
        assert e == s
        for hit in edge.query(q):
            if "collection" in kw:
                assert hit.collection == kw["collection"]
            if "doc_ids" in kw:
                assert hit.doc_id in kw["doc_ids"]  # type: ignore[operator]
    # the exact dense match ranks first when dense alone is asked
    q = PageQuery(dense={"image": qv}, sparse=None, limit=1)
    assert [(s.doc_id, s.page) for s in edge.query(q)] == [(s.doc_id, s.page) for s in server.query(q)] == [("doc0", 4)]


def test_upsert_is_idempotent_and_delete_by_document(both: list[VectorIndex]) -> None:
    for ix in both:
        ix.upsert(_points())  # same ids: no duplicates
        assert ix.count() == len(TEXTS)
        ix.set_collection("doc2", "moved")
        q = PageQuery(dense={}, sparse=bm25.embed_query("matrix regression data"), limit=20, collection="moved")
        assert {s.doc_id for s in ix.query(q)} == {"doc2"}
        ix.delete_document("doc1")
        ix.flush()
        assert ix.count("doc1") == 0 and ix.count() == len(TEXTS) - 4
    assert both[0].doc_ids() == both[1].doc_ids() == {"doc0", "doc2"}


def test_dimension_change_recreates_vector(both: list[VectorIndex]) -> None:
    for ix in both:
        assert ix.ensure_dense("image", DIM * 2) is True
        assert ix.dense_dims()["image"] == DIM * 2


def test_edge_reopens_and_refuses_second_process_handle(tmp_path: Path) -> None:
    from schemas.errors import StoreLocked

    ix = EdgeIndex(tmp_path / "q")
    ix.ensure_dense("image", DIM)
    ix.upsert(_points()[:3])
    ix.flush()
    with pytest.raises(StoreLocked, match="PAGELENS_QDRANT_URL"):
        EdgeIndex(tmp_path / "q")
    ix.close()
    again = EdgeIndex(tmp_path / "q")
    assert again.count() == 3 and again.dense_dims() == {"image": DIM}
    again.close()


def test_update_vectors_replaces_only_what_is_given(both: list[VectorIndex]) -> None:
    p = _points()[0]
    for ix in both:
        ix.ensure_dense("caption", DIM)
        ix.update_vectors([PagePoint(id=p.id, doc_id=p.doc_id, page=p.page, collection=p.collection,
                                     text=bm25.embed_document("zanzibar spice island"),
                                     dense={"caption": p.dense["image"]})])
        ix.flush()
        hits = ix.query(PageQuery(dense={}, sparse=bm25.embed_query("zanzibar"), limit=3))
        assert [(h.doc_id, h.page) for h in hits] == [(p.doc_id, p.page)]
        assert ix.query(PageQuery(dense={}, sparse=bm25.embed_query("lm fitted"), limit=3)) == [], "old text gone"
        by_image = ix.query(PageQuery(dense={"image": p.dense["image"]}, sparse=None, limit=1))
        assert [(h.doc_id, h.page) for h in by_image] == [(p.doc_id, p.page)], "the image vector is kept"
        by_caption = ix.query(PageQuery(dense={"caption": p.dense["image"]}, sparse=None, limit=5))
        assert [(h.doc_id, h.page) for h in by_caption] == [(p.doc_id, p.page)], "only that point has a caption"
        assert ix.count() == len(TEXTS) and ix.query(PageQuery(dense={}, sparse=None, limit=3)) == []


def _chunks(seed: int, rows: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((rows, DIM)).astype(np.float32)
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).tolist()


def test_words_multivector_is_scored_by_its_best_chunk_on_both(both: list[VectorIndex]) -> None:
    """The text encoder's ``words`` vector keeps a row per chunk of a page: a page is as near as its nearest chunk
    (MaxSim of one query row), the same on Edge and the server path; a page without it is simply not in that list."""
    pts = _points()
    chunks = {p.page: _chunks(p.page, 1 + p.page % 4) for p in pts[:8]}
    q = np.asarray(chunks[5][-1]) * 0.9 + np.asarray(chunks[2][0]) * 0.1  # nearest: page 5's last chunk
    q = (q / np.linalg.norm(q)).tolist()
    expected = sorted(chunks, key=lambda page: -max(float(np.dot(q, row)) for row in chunks[page]))
    for ix in both:
        assert ix.ensure_dense("words", DIM) is True
        ix.update_vectors([PagePoint(id=p.id, doc_id=p.doc_id, page=p.page, collection=p.collection, text=p.text,
                                     dense={"words": chunks[p.page]}) for p in pts[:8]])
        ix.flush()
        got = ix.query(PageQuery(dense={"words": q}, sparse=None, limit=8))
        assert [s.page for s in got] == expected
        assert ix.count() == len(TEXTS), "the other points stay"
        by_image = ix.query(PageQuery(dense={"image": pts[3].dense["image"]}, sparse=None, limit=1))
        assert by_image[0].page == pts[3].page, "their image vectors stay"
        ix.delete_document("doc1")
        assert all(s.doc_id != "doc1" for s in ix.query(PageQuery(dense={"words": q}, sparse=None, limit=8)))


def test_a_multivector_over_qdrants_cap_is_refused_with_what_to_do(both: list[VectorIndex]) -> None:
    from schemas.errors import ConfigError

    p = _points()[0]
    for ix in both:
        ix.ensure_dense("words", DIM)
        too_many = [[1.0] + [0.0] * (DIM - 1)] * (1_048_576 // DIM)
        with pytest.raises(ConfigError, match="rows kept per page"):
            ix.update_vectors([PagePoint(id=p.id, doc_id=p.doc_id, page=p.page, collection=p.collection,
                                         text=p.text, dense={"words": too_many})])


def test_weighted_fusion_agrees_and_moves_the_ranking(both: list[VectorIndex]) -> None:
    """Weighted RRF (Qdrant's form: a list's top scores 1/(1/w + k - 1)) gives the same scores on Edge and the
    server path, and a heavier dense list pulls its pages up."""
    from retrieval.search import rrf_top

    edge, server = both
    qv = _points()[7].dense["image"]  # "the quick brown fox": no BM25 term of the question
    sparse = bm25.embed_query("regression models data")
    # each list brings its first page only: the fox (dense) and BM25's best, tied at weight 1
    plain = PageQuery(dense={"image": qv}, sparse=sparse, limit=2, prefetch_limit=1)
    heavy = PageQuery(dense={"image": qv}, sparse=sparse, limit=2, prefetch_limit=1, weights={"image": 5.0})
    for q in (plain, heavy):
        assert _ranked(edge, q) == _ranked(server, q)
    p, h = edge.query(plain), edge.query(heavy)
    assert ("doc1", 8) in {(s.doc_id, s.page) for s in p} and p[0].score == pytest.approx(p[1].score)
    assert (h[0].doc_id, h[0].page) == ("doc1", 8), "the heavier list's page first"
    assert h[0].score == pytest.approx(rrf_top(5.0, 60), rel=1e-4) and h[1].score == pytest.approx(1 / 60, rel=1e-4)


def test_weighted_score_fusion_agrees_and_keeps_a_sure_list_ahead(both: list[VectorIndex]) -> None:
    """DBSF (``store.fusion``): the same lists and scores on Edge and the server path (one batch call there); a page
    BM25 is sure of stays first beside a dense list, and at weight 0 the dense list changes nothing."""
    from store.fusion import dbsf
    from store.vectors import ScoredPage

    edge, server = both
    qv = _points()[7].dense["image"]
    sparse = bm25.embed_query("exporting data to text files as plain ascii")
    q = PageQuery(dense={"image": qv}, sparse=sparse, limit=6, fusion="dbsf", weights={"image": 0.5})
    assert _ranked(edge, q) == _ranked(server, q)
    assert (edge.query(q)[0].doc_id, edge.query(q)[0].page) == ("doc0", 10), "BM25's clear winner stays first"
    alone = PageQuery(dense={}, sparse=sparse, limit=6, fusion="dbsf")
    muted = PageQuery(dense={"image": qv}, sparse=sparse, limit=6, fusion="dbsf", weights={"image": 0.0})
    assert [(s.doc_id, s.page) for s in edge.query(muted)] == [(s.doc_id, s.page) for s in edge.query(alone)]
    # the arithmetic: mean ± 3 sample sd onto 0..1 (not clipped), times the weight, summed
    a = [ScoredPage("d", 1, "c", 3.0), ScoredPage("d", 2, "c", 1.0)]
    b = [ScoredPage("d", 2, "c", 0.9), ScoredPage("d", 3, "c", 0.1)]
    fused = {s.page: s.score for s in dbsf([(1.0, a), (0.5, b)], 3)}
    sa, sb = np.std([3.0, 1.0], ddof=1), np.std([0.9, 0.1], ddof=1)

    def norm(x: float, mean: float, sd: float) -> float:
        return float((x - (mean - 3 * sd)) / (6 * sd))

    assert fused[1] == pytest.approx(norm(3, 2, sa)) and fused[3] == pytest.approx(0.5 * norm(0.1, 0.5, sb))
    assert fused[2] == pytest.approx(norm(1, 2, sa) + 0.5 * norm(0.9, 0.5, sb))
    # a rare word only one page has: that page is BM25's best (1), ahead of a dense list's top
    one = dbsf([(1.0, [ScoredPage("d", 9, "c", 7.0)]), (1.0, b)], 3)
    assert one[0].page == 9 and one[0].score == pytest.approx(1.0)
