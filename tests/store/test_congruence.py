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
