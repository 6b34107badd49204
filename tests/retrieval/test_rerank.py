"""The late-interaction reranker: a tiny random-weight ColQwen2 (and ColQwen2.5) built offline and loaded through
``from_pretrained(dir)`` like a real checkpoint; its vectors stored as the ``patches`` MaxSim multivector on Qdrant
Edge and through qdrant-client (in-process and over REST), where Qdrant's MaxSim must equal the processor's own
``score_retrieval`` and the rerank its order; pooling and storage change scores within stated bounds; the stage
embeds stored pages without reading them again; a store without a reranker answers as before."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from app.service import Service
from schemas.errors import ConfigError, ModelUnavailable
from schemas.ids import point_id
from schemas.settings import RerankSettings, Settings
from store import bm25
from store.pages import render_for_model
from store.qdrant_edge import EdgeIndex
from store.qdrant_server import ServerIndex
from store.vectors import MAX_MULTIVECTOR_FLOATS, RERANK_VECTOR, PagePoint, PageQuery, VectorIndex, VectorSpec
from tests.conftest import PDFS, forbid_reading, make_settings
from tests.qdrant_rest import qdrant_server
from vlm.late_interaction import LateInteractionEncoder, maxsim, pool_rows
from vlm.runtime import Models

PIXELS = 448 * 448
QUESTIONS = ["matrix inverse", "plot a graph of the data", "how do I read a spreadsheet", "eigenvalues"]


@pytest.fixture(scope="module")
def tiny_colqwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_colqwen2

    return build_tiny_colqwen2(tmp_path_factory.mktemp("tiny-colqwen2"), max_pixels=PIXELS)


@pytest.fixture(scope="module")
def encoder(tiny_colqwen2: Path) -> LateInteractionEncoder:
    return LateInteractionEncoder(RerankSettings(model=str(tiny_colqwen2), max_pixels=PIXELS))


@pytest.fixture(scope="module")
def pages(encoder: LateInteractionEncoder) -> list[tuple[int, np.ndarray]]:
    """Six real pages (refcard 1-3, R-data 1, 9, 36) and their unpooled vectors."""
    images = [render_for_model(PDFS / f, p, max_pixels=PIXELS)
              for f, p in [("refcard-a4.pdf", 1), ("refcard-a4.pdf", 2), ("refcard-a4.pdf", 3),
                           ("R-data.pdf", 1), ("R-data.pdf", 9), ("R-data.pdf", 36)]]
    return list(enumerate(encoder.encode_pages(images, pool=False), start=1))


def _processor_score(encoder: LateInteractionEncoder, q: np.ndarray, p: np.ndarray) -> float:
    import torch

    return float(encoder.processor.score_retrieval([torch.tensor(q)], [torch.tensor(p)])[0, 0])


def _points(pages: list[tuple[int, np.ndarray]], pool: int = 1) -> list[PagePoint]:
    return [PagePoint(id=point_id("doc", n), doc_id="doc", page=n, collection="c" if n % 2 else "d",
                      text=bm25.embed_document("a page of the reference card"),
                      dense={RERANK_VECTOR: pool_rows(rows, pool).tolist()}) for n, rows in pages]


@pytest.fixture(params=["edge", "memory", "rest"])
def index(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[VectorIndex]:
    with ExitStack() as stack:
        if request.param == "edge":
            ix: VectorIndex = EdgeIndex(tmp_path / "qdrant")
        else:
            ix = ServerIndex(":memory:" if request.param == "memory" else stack.enter_context(qdrant_server())[0])
        yield ix
        ix.close()


def test_the_model_loads_from_its_dir_and_gives_unit_multivectors(tiny_colqwen2: Path, tmp_path: Path,
                                                                 pages: list[tuple[int, np.ndarray]]) -> None:
    from tests.tiny_models import build_tiny_colqwen2

    for d in (tiny_colqwen2, build_tiny_colqwen2(tmp_path / "colqwen25", qwen25=True, max_pixels=PIXELS)):
        enc = LateInteractionEncoder(RerankSettings(model=str(d), max_pixels=PIXELS))
        page = render_for_model(PDFS / "refcard-a4.pdf", 1, max_pixels=PIXELS)
        raw, pooled = enc.encode_pages([page], pool=False)[0], enc.encode_pages([page])[0]
        assert enc.family == "colqwen2" and enc.dim == 32
        # 448×448 at most: (≤ 16×16 merged patches) image tokens + the processor's prompt
        assert 200 < raw.shape[0] < 16 * 16 + 40 and raw.shape[1] == 32
        assert pooled.shape == (raw.shape[0] // 3, 32)
        for rows in (raw, pooled, *enc.encode_queries(["matrix inverse", "a longer question about a plot"])):
            assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5), "no padding rows, unit length"


def test_overlapped_batches_give_the_vectors_of_one_batch_at_a_time(encoder: LateInteractionEncoder) -> None:
    """The GPU path (the next batch prepared and the last pooled in threads while the model runs) returns the same
    vectors, in the same order, as batches run one after another (forced on here: a CPU runs it in turn)."""
    images = [render_for_model(PDFS / f, p, max_pixels=PIXELS)
              for f, p in [("refcard-a4.pdf", 1), ("R-data.pdf", 9), ("refcard-a4.pdf", 3), ("R-data.pdf", 1),
                           ("R-data.pdf", 36)]]
    encoder.batch_size = 2  # three batches, the last one short
    try:
        plain = encoder.encode_pages(images, overlap=False)
        overlapped = encoder.encode_pages(images, overlap=True)
    finally:
        encoder.batch_size = RerankSettings().batch_size
    assert len(overlapped) == len(plain) == 5
    for a, b in zip(plain, overlapped, strict=True):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)
    assert len({a.shape[0] for a in plain}) > 1, "the pages differ: an order mix-up would show"


def test_a_missing_or_wrong_model_says_how_to_fix_it(tmp_path: Path, tiny_qwen25: Path) -> None:
    with pytest.raises(ModelUnavailable, match="PAGELENS_RERANK__MODEL"):
        LateInteractionEncoder(RerankSettings(model=str(tmp_path / "nowhere")))
    with pytest.raises(ModelUnavailable, match="'qwen2_5_vl' model, not one of"):  # a VLM, not a retriever
        LateInteractionEncoder(RerankSettings(model=str(tiny_qwen25)))
    models = Models(Settings(data_dir=tmp_path))
    with pytest.raises(ModelUnavailable, match="no late-interaction reranker is configured"):
        models.reranker()
    assert models.why_not("reranker") is not None and models.maybe(models.reranker) is None


def _reranked_as_its_processor(index: VectorIndex, encoder: LateInteractionEncoder,
                               pages: list[tuple[int, np.ndarray]], question: str,
                               **query: object) -> tuple[np.ndarray, dict[int, float]]:
    """Rerank all ``pages`` for ``question``: Qdrant's order and scores are the processor's ``score_retrieval``
    (and ``maxsim``'s). Returns the question's vectors and the processor's score of each page."""
    q = encoder.encode_queries([question])[0]
    want = {n: _processor_score(encoder, q, rows) for n, rows in pages}
    got = index.query(PageQuery(dense={}, sparse=bm25.embed_query("reference card page"), limit=len(pages),
                                rerank=q.tolist(), rerank_candidates=len(pages), **query))  # type: ignore[arg-type]
    assert [s.page for s in got] == sorted(want, key=lambda n: -want[n]), question
    for s in got:
        assert s.score == pytest.approx(want[s.page], rel=1e-5, abs=1e-4)
        assert s.score == pytest.approx(maxsim(q, dict(pages)[s.page]), rel=1e-5, abs=1e-4)
    return q, want


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_qdrant_maxsim_equals_the_processors_score_and_reranks_in_its_order(
        index: VectorIndex, encoder: LateInteractionEncoder, pages: list[tuple[int, np.ndarray]],
        fusion: str) -> None:
    assert index.ensure_dense(RERANK_VECTOR, encoder.dim, VectorSpec(hnsw=False)) is True
    assert index.ensure_dense(RERANK_VECTOR, encoder.dim, VectorSpec(hnsw=False)) is False
    index.upsert(_points(pages))
    index.flush()
    for question in QUESTIONS:
        q, want = _reranked_as_its_processor(index, encoder, pages, question, fusion=fusion)
        # the rerank keeps the query's filters: only the pages of collection "c"
        odd = index.query(PageQuery(dense={}, sparse=bm25.embed_query("reference card"), limit=6,
                                    rerank=q.tolist(), rerank_candidates=6, fusion=fusion,  # type: ignore[arg-type]
                                    collections=["c"]))
        assert [s.page for s in odd] == [n for n in sorted(want, key=lambda n: -want[n]) if n % 2]


def test_colpali_loads_through_the_same_encoder_and_qdrant_scores_it_as_its_processor(
        index: VectorIndex, tmp_path: Path) -> None:
    """ColPali (``ColPaliForRetrieval`` + ``ColPaliProcessor``, PaliGemma inside), chosen by its config's
    ``model_type`` like ColQwen2: unit multivectors, padding dropped; Qdrant's MaxSim equals
    ``processor.score_retrieval`` and the rerank keeps its order."""
    from tests.tiny_models import build_tiny_colpali

    enc = LateInteractionEncoder(RerankSettings(model=str(build_tiny_colpali(tmp_path / "colpali")),
                                                max_pixels=PIXELS))
    assert enc.family == "colpali" and enc.dim == 32
    images = [render_for_model(PDFS / f, p, max_pixels=PIXELS)
              for f, p in [("refcard-a4.pdf", 1), ("R-data.pdf", 9), ("R-data.pdf", 36)]]
    pages = list(enumerate(enc.encode_pages(images, pool=False), start=1))
    for _, rows in pages:
        assert rows.shape[1] == 32 and rows.shape[0] >= 16  # 16 image patches + the prompt
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    index.ensure_dense(RERANK_VECTOR, enc.dim, VectorSpec(hnsw=False))
    index.upsert(_points(pages))
    index.flush()
    for question in QUESTIONS:
        _reranked_as_its_processor(index, enc, pages, question)


def test_only_the_fused_candidates_are_reranked(index: VectorIndex, encoder: LateInteractionEncoder,
                                                pages: list[tuple[int, np.ndarray]]) -> None:
    """The rerank reorders the top ``rerank_candidates`` of the fusion; pages outside them never come back."""
    index.ensure_dense(RERANK_VECTOR, encoder.dim, VectorSpec(hnsw=False))
    points = _points(pages)
    texts = ["matrix inverse determinant", "matrix inverse", "plotting", "import data", "spreadsheets", "inverse"]
    index.upsert([PagePoint(p.id, p.doc_id, p.page, p.collection, bm25.embed_document(t), p.dense)
                  for p, t in zip(points, texts, strict=True)])
    index.flush()
    q = encoder.encode_queries(["matrix inverse"])[0]
    for fusion in ("rrf", "dbsf"):
        got = index.query(PageQuery(dense={}, sparse=bm25.embed_query("matrix inverse"), limit=6,
                                    rerank=q.tolist(), rerank_candidates=2, fusion=fusion))  # type: ignore[arg-type]
        assert sorted(s.page for s in got) == [1, 2], fusion  # BM25's top two, in MaxSim order
        want = {n: maxsim(q, dict(pages)[n]) for n in (1, 2)}
        assert [s.page for s in got] == sorted(want, key=lambda n: -want[n])


def test_pooling_and_storage_change_scores_within_bounds(tmp_path: Path, encoder: LateInteractionEncoder,
                                                         pages: list[tuple[int, np.ndarray]]) -> None:
    """Pooling (factor 3) keeps a third of the rows and moves a MaxSim score by at most 15 % here (random
    weights: a trained model's patches cluster far better); float16 storage by at most 0.2 %; scalar or binary
    quantization is kept beside the originals, which the rerank scores (exact: no change)."""
    queries = [encoder.encode_queries([q])[0] for q in QUESTIONS]
    exact = {(i, n): maxsim(q, rows) for i, q in enumerate(queries) for n, rows in pages}
    for (i, n), score in exact.items():
        pooled = maxsim(queries[i], pool_rows(dict(pages)[n], 3))
        assert abs(pooled - score) <= 0.15 * abs(score), (i, n, pooled, score)
    for spec, rel in [(VectorSpec("float16", hnsw=False), 2e-3), (VectorSpec("float32", "scalar", hnsw=False), 1e-5),
                      (VectorSpec("float16", "binary", hnsw=False), 2e-3)]:
        ix = EdgeIndex(tmp_path / f"q-{spec.datatype}-{spec.quantization}")
        try:
            ix.ensure_dense("image", 4)
            assert ix.ensure_dense(RERANK_VECTOR, encoder.dim, spec) is True
            ix.upsert([PagePoint(p.id, p.doc_id, p.page, p.collection, p.text,
                                 {**p.dense, "image": [1.0, 0.0, 0.0, float(p.page)]}) for p in _points(pages)])
            ix.flush()
            ix.optimize()
            for i, q in enumerate(queries):
                got = ix.query(PageQuery(dense={"image": [1.0, 0.0, 0.0, 1.0]}, sparse=None, limit=6,
                                         rerank=q.tolist(), rerank_candidates=6))
                assert len(got) == 6
                for s in got:
                    assert s.score == pytest.approx(exact[(i, s.page)], rel=rel), (spec, i, s.page)
        finally:
            ix.close()
        reopened = EdgeIndex(tmp_path / f"q-{spec.datatype}-{spec.quantization}")  # the spec survives a reopen
        try:
            assert reopened.ensure_dense(RERANK_VECTOR, encoder.dim, spec) is False
            assert reopened.count() == 6 and reopened.pages_of("doc") == set(range(1, 7))
        finally:
            reopened.close()


def test_qdrants_cap_on_a_multivector_is_a_clear_error(index: VectorIndex) -> None:
    index.ensure_dense(RERANK_VECTOR, 128, VectorSpec(hnsw=False))
    rows = MAX_MULTIVECTOR_FLOATS // 128 + 1
    point = PagePoint(point_id("doc", 1), "doc", 1, "c", bm25.embed_document("x"),
                      {RERANK_VECTOR: np.ones((rows, 128), np.float32).tolist()})
    with pytest.raises(ConfigError, match="over Qdrant's 1,048,576 floats"):
        index.upsert([point])


def _rerank_settings(data: Path, model: Path | None) -> Settings:
    s = make_settings(data, None)
    return s.model_copy(update={"rerank": RerankSettings(model=str(model) if model else "", max_pixels=PIXELS,
                                                         candidates=16)})


@pytest.mark.corpus
def test_turning_it_on_embeds_existing_pages_without_reading_them(tmp_path: Path, tiny_colqwen2: Path,
                                                                  encoder: LateInteractionEncoder,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    question = "functions"
    with Service(_rerank_settings(data, None)) as svc:
        svc.ingest([PDFS / "refcard-a4.pdf"])
        before = [(h.page, round(h.score, 6)) for h in svc.search(question, k=3)]
        assert len(before) == 3
        assert RERANK_VECTOR not in svc.index.dense_dims() and "patches" not in svc.get_document(
            "refcard-a4.pdf").stages
    forbid_reading(monkeypatch)
    with Service(_rerank_settings(data, tiny_colqwen2)) as svc:
        report = svc.ingest([PDFS / "refcard-a4.pdf"])
        assert [f.status for f in report.files] == ["ingested"] and "patches" not in report.files[0].pending
        doc = svc.get_document("refcard-a4.pdf")
        assert doc.stages["patches"].startswith(str(tiny_colqwen2)) and svc.index.dense_dims()[RERANK_VECTOR] == 32
        assert svc.ingest([PDFS / "refcard-a4.pdf"]).files[0].status == "unchanged", "its stage is current now"
        hits = svc.search(question, k=3)
        q = encoder.encode_queries([question])[0]
        for h in hits:  # reranked: each page's MaxSim against its own pooled patches, relevance in [0, 1]
            page = render_for_model(PDFS / "refcard-a4.pdf", h.page, max_pixels=PIXELS)
            assert h.score == pytest.approx(maxsim(q, encoder.encode_pages([page])[0]), rel=2e-3)
            assert 0 < h.relevance <= 1 and h.relevance == pytest.approx(h.score / len(q), abs=1e-4)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        svc.delete_document(doc.doc_id)
        assert svc.index.count() == 0
    monkeypatch.undo()
    with Service(_rerank_settings(data, None)) as svc:  # off again: the query is today's
        svc.ingest([PDFS / "refcard-a4.pdf"])
        assert [(h.page, round(h.score, 6)) for h in svc.search(question, k=3)] == before


@pytest.mark.corpus
def test_a_recreated_vector_leaves_the_documents_it_emptied_pending(tmp_path: Path, tiny_colqwen2: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another storage for the patches recreates the named vector, emptying it for every document: the one this
    run ingests is embedded again, the others lose the stage and have it pending (not a stage claiming vectors
    they no longer have); their next ingest embeds them without reading them."""
    data = tmp_path / "data"
    files = [PDFS / "refcard-a4.pdf", PDFS / "R-data.pdf"]
    with Service(_rerank_settings(data, tiny_colqwen2)) as svc:
        svc.ingest(files)
        assert all("patches" in d.stages for d in svc.list_documents())
    forbid_reading(monkeypatch)
    wider = _rerank_settings(data, tiny_colqwen2)
    wider.rerank.storage = "float32"
    with Service(wider) as svc:
        (f,) = svc.ingest(files[:1]).files
        assert f.status == "ingested" and "patches" not in f.pending, f
        card, rdata = svc.get_document("refcard-a4.pdf"), svc.get_document("R-data.pdf")
        assert card.stages["patches"].endswith("float32,none") and "patches" not in card.pending
        assert "patches" not in rdata.stages and "patches" in rdata.pending
        assert {p for (d, p), v in _patch_rows(svc).items() if d == rdata.doc_id} == set(), "its vectors are gone"
        (g,) = svc.ingest(files[1:]).files
        assert g.status == "ingested" and "patches" not in g.pending, g
        assert svc.get_document("R-data.pdf").stages["patches"].endswith("float32,none")
        assert len(_patch_rows(svc)) == 3 + 41


def _patch_rows(svc: Service) -> dict[tuple[str, int], object]:
    """Each point that has patch vectors, as the embedded index holds them."""
    import qdrant_edge as qe

    got = svc.index._shard.scroll(qe.ScrollRequest(limit=5000, with_payload=True, with_vector=True))  # type: ignore[attr-defined]
    records = got[0] if isinstance(got, tuple) else got
    return {(r.payload["doc_id"], int(r.payload["page"])): r.vector[RERANK_VECTOR] for r in records
            if r.vector.get(RERANK_VECTOR)}


@pytest.mark.corpus
def test_a_reranker_that_cannot_load_leaves_the_stage_pending_and_search_unchanged(tmp_path: Path) -> None:
    with Service(_rerank_settings(tmp_path / "data", tmp_path / "missing-model")) as svc:
        report = svc.ingest([PDFS / "refcard-a4.pdf"])
        assert report.files[0].status == "ingested" and "patches" in report.files[0].pending
        assert "PAGELENS_RERANK__MODEL" in (svc.models.why_not("reranker") or "")
        assert svc.search("matrix functions", k=3), "BM25 still answers"
