"""Question → one hybrid query (BM25; the text encoder's embedding against the pages' word chunks and SigLIP's
against their images and captions, when those models load; weighted fusion; then, with a late-interaction reranker
configured, the top candidates reranked by MaxSim against their patch vectors) → ranked pages, each with the words on
that page that match the question (by Qdrant's own BM25 terms, so "running" finds "runs")."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal

from schemas.documents import Word
from schemas.errors import InputError
from schemas.results import Hit
from schemas.wordtable import WordTable
from store import bm25
from store.catalog import Catalog
from store.vectors import RERANK_VECTOR, RRF_K, PageQuery, ScoredPage, VectorIndex
from vlm.runtime import Models

log = logging.getLogger(__name__)

MAX_HIT_WORDS = 40
POOL = 50  # candidate pages documents are ranked over


def rank_documents(scored: Sequence[ScoredPage]) -> list[tuple[str, float, list[int]]]:
    """Documents ranked by their best candidate page (ties: more candidate pages first): (doc_id, best score,
    its candidate pages best first). Summing page scores instead favours the longest documents (measured: the
    right manual first for 0.40 of outline titles by sum, 0.93 by best page; BENCHMARKS.md, issue 8)."""
    docs: dict[str, list[ScoredPage]] = {}
    for s in scored:
        docs.setdefault(s.doc_id, []).append(s)
    ranked = sorted(docs.items(), key=lambda kv: (-max(p.score for p in kv[1]), -len(kv[1])))
    return [(d, max(p.score for p in ps), [p.page for p in sorted(ps, key=lambda p: -p.score)])
            for d, ps in ranked]


def matching_words(table: WordTable, question_terms: frozenset[int]) -> list[Word]:
    """Words whose BM25 terms intersect the question's, in reading order (at most MAX_HIT_WORDS)."""
    if not question_terms:
        return []
    idx = [i for i, t in enumerate(table.texts) if bm25.terms(t) & question_terms][:MAX_HIT_WORDS]
    sub = WordTable([table.texts[i] for i in idx], table.boxes[idx], table.conf[idx], table.source)
    return sub.words()


SNIPPET_WORDS = 14  # words of the page's own text around the best run of matches


def snippet(table: WordTable, question_terms: frozenset[int]) -> str:
    """The page's own text around its densest run of matching words (reading order), with ``…`` where cut;
    the page's first words when nothing matches."""
    texts = table.texts
    if not texts:
        return ""
    hits = [i for i, t in enumerate(texts) if question_terms and bm25.terms(t) & question_terms]
    if not hits:
        return " ".join(texts[:SNIPPET_WORDS]) + (" …" if len(texts) > SNIPPET_WORDS else "")
    best = max(hits, key=lambda i: sum(1 for j in hits if i <= j < i + SNIPPET_WORDS))
    start = max(0, best - SNIPPET_WORDS // 4)
    end = min(len(texts), start + SNIPPET_WORDS)
    return ("… " if start else "") + " ".join(texts[start:end]) + (" …" if end < len(texts) else "")


def rrf_top(weight: float, rrf_k: int) -> float:
    """What the first of a ranked list of ``weight`` scores in Qdrant's RRF: ``1 / (1/weight + rrf_k - 1)`` (its
    weighted form; 1/rrf_k at weight 1)."""
    return 1.0 / (1.0 / weight + rrf_k - 1) if weight > 0 else 0.0


def relevance(score: float, weights: Sequence[float], rrf_k: int, fusion: str = "rrf") -> float:
    """A fused score over its best possible, the top of every list (of those ``weights``): for RRF each list's
    first place, for DBSF each list's normalised maximum (1 × its weight)."""
    best = sum(rrf_top(w, rrf_k) for w in weights) if fusion == "rrf" else sum(weights)
    return min(1.0, max(0.0, score / best)) if best > 0 else 0.0  # DBSF is not clipped: a page may score < 0


def _question(question: str) -> str:
    """The question stripped. Raises InputError when nothing is left."""
    question = question.strip()
    if not question:
        raise InputError("the question is empty; ask something, e.g. pagelens search \"linear models\"")
    return question


class Searcher:
    """``models``: where the query encoders come from (None: BM25 only); ``weights``: each ranked list's weight in
    the fusion, by vector name (BM25's ``text`` is 1 unless given)."""

    def __init__(self, catalog: Catalog, index: VectorIndex, models: Models | None,
                 weights: dict[str, float] | None = None, fusion: Literal["rrf", "dbsf"] = "rrf",
                 weigh: Callable[[str], dict[str, float]] | None = None) -> None:
        """``weigh``: per-query weights (e.g. the text encoder's, which depend on the question's length), over
        ``weights``."""
        self.catalog = catalog
        self.index = index
        self.models = models
        self.weights = weights or {}
        self.fusion = fusion
        self.weigh = weigh
        self._said: set[str] = set()

    def _dense(self, question: str, dims: dict[str, int]) -> dict[str, list[float]]:
        """The question's query vectors for the dense vectors the index has (``dims``) and whose model loads."""
        if not dims or self.models is None:
            return {}
        out: dict[str, list[float]] = {}
        text = self._model("text_encoder") if "words" in dims else None
        if text is not None and text.dim == dims["words"]:
            out["words"] = text.encode_queries([question])[0].tolist()
        if {"image", "caption"} & dims.keys() and (siglip := self._model("image_encoder")) is not None:
            v = siglip.encode_texts([question])[0].tolist()
            out.update({name: v for name in ("image", "caption") if dims.get(name) == siglip.dim})
        return out

    def _rerank(self, question: str, dims: dict[str, int]) -> list[list[float]] | None:
        """The question's late-interaction rows, when the index has patch vectors (``dims``) and the reranker
        loads."""
        if self.models is None or RERANK_VECTOR not in dims or not self.models.settings.rerank.enabled:
            return None
        model = self._model("reranker")
        if model is None or model.dim != dims[RERANK_VECTOR]:
            return None
        return model.encode_queries([question])[0].tolist()

    def _model(self, name: Literal["text_encoder", "image_encoder", "reranker"]) -> Any:
        assert self.models is not None
        model = self.models.maybe(getattr(self.models, name))
        if model is None and name not in self._said:  # said once per process
            self._said.add(name)
            log.warning("searching without the %s: %s", name.replace("_", " "), self.models.why_not(name))
        return model

    def search(self, question: str, *, k: int = 5, collection: str | None = None,
               doc_ids: Sequence[str] | None = None, collections: Collection[str] | None = None) -> list[Hit]:
        """Top ``k`` pages for ``question``, among the pages of ``collections`` when given (the asker's tenant
        scope, applied in the query). Raises InputError on an empty question or bad ``k``."""
        question = _question(question)
        if not 1 <= k <= 1000:
            raise InputError(f"k must be between 1 and 1000, got {k}")
        # a few more than k: pages of a document still being written are dropped from the hits, and k must stay k
        scored, scale = self._candidates(question, k, collection, doc_ids, collections, fetch=k + max(8, k))
        return self._hits(question, scored, scale)[:k]

    def _candidates(self, question: str, limit: int, collection: str | None, doc_ids: Sequence[str] | None,
                    collections: Collection[str] | None, *,
                    fetch: int | None = None) -> tuple[list[ScoredPage], Callable[[float], float]]:
        """The fused (or reranked) pages (``fetch`` of them, default ``limit``; each list's window follows
        ``limit`` alone, so fetching more never reorders the first ``limit``), and how a score of theirs becomes a
        relevance in [0, 1]."""
        if collections is not None and (not collections or (collection is not None and collection not in collections)):
            return [], lambda score: 0.0  # nothing the asker may see
        dims = self.index.dense_dims()  # once a query: a server answers it over the network
        dense, sparse = self._dense(question, dims), bm25.embed_query(question)
        rerank = self._rerank(question, dims)
        weights = {**self.weights, **(self.weigh(question) if self.weigh else {})}
        candidates = self.models.settings.rerank.candidates if self.models is not None else 0
        q = PageQuery(dense=dense, sparse=sparse, limit=max(limit, fetch or limit),
                      collection=collection, doc_ids=list(doc_ids) if doc_ids is not None else None,
                      collections=sorted(collections) if collections is not None else None,
                      prefetch_limit=max(50, 4 * limit), weights=weights, fusion=self.fusion,
                      rerank=rerank, rerank_candidates=max(candidates, limit, fetch or limit))
        if rerank is not None:  # MaxSim over the question's rows: each row's best cosine, at most 1 a row
            rows = len(rerank)
            return self.index.query(q), lambda score: min(1.0, max(0.0, score / rows))
        fused = [*dense, *(["text"] if sparse.indices else [])]  # ``_dense`` gives only the index's own vectors
        ws = [weights.get(name, 1.0) for name in fused]
        return self.index.query(q), functools.partial(relevance, weights=ws, rrf_k=RRF_K, fusion=self.fusion)

    def search_documents(self, question: str, *, k: int = 5, collection: str | None = None,
                         collections: Collection[str] | None = None) -> list[tuple[str, float, list[int]]]:
        """The documents most about ``question``: (doc_id, score, their best pages), from the top POOL pages."""
        question = _question(question)
        pool, _ = self._candidates(question, POOL, collection, None, collections)
        names = self.catalog.document_names([s.doc_id for s in pool], complete_only=True)
        return [r for r in rank_documents(pool) if r[0] in names][:k]

    def _hits(self, question: str, scored: Sequence[ScoredPage], scale: Callable[[float], float]) -> list[Hit]:
        records = {(r.page.doc_id, r.page.page_no): r
                   for r in self.catalog.get_pages([(s.doc_id, s.page) for s in scored])}
        names = self.catalog.document_names([s.doc_id for s in scored], complete_only=True)
        terms = bm25.terms(question)
        hits = []
        for s in scored:
            rec = records.get((s.doc_id, s.page))
            if rec is None or s.doc_id not in names:  # a partial document: mid-ingest, or left by a killed run
                continue
            hits.append(Hit(doc_id=s.doc_id, path=names[s.doc_id], collection=s.collection, page=s.page,
                            score=s.score, relevance=round(scale(s.score), 4),
                            snippet=snippet(rec.table, terms), words=matching_words(rec.table, terms),
                            caption=rec.page.caption))
        return hits
