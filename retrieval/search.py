"""Question → one hybrid query (SigLIP text embedding when available + BM25, RRF) → ranked pages, each with
the words on that page that match the question (by Qdrant's own BM25 terms, so "running" finds "runs")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from schemas.documents import Word
from schemas.errors import InputError, ModelUnavailable
from schemas.results import Hit
from schemas.wordtable import WordTable
from store import bm25
from store.catalog import Catalog
from store.vectors import PageQuery, VectorIndex
from vlm.siglip import SiglipEncoder

log = logging.getLogger(__name__)

MAX_HIT_WORDS = 40


def matching_words(table: WordTable, question_terms: frozenset[int]) -> list[Word]:
    """Words whose BM25 terms intersect the question's, in reading order (at most MAX_HIT_WORDS)."""
    if not question_terms:
        return []
    idx = [i for i, t in enumerate(table.texts) if bm25.terms(t) & question_terms][:MAX_HIT_WORDS]
    sub = WordTable([table.texts[i] for i in idx], table.boxes[idx], table.conf[idx], table.source)
    return sub.words()


class Searcher:
    def __init__(self, catalog: Catalog, index: VectorIndex,
                 encoder: Callable[[], SiglipEncoder] | None) -> None:
        self.catalog = catalog
        self.index = index
        self._encoder_provider = encoder
        self._encoder: SiglipEncoder | None = None
        self._encoder_failed = False

    def _dense(self, question: str) -> dict[str, list[float]]:
        dims = self.index.dense_dims()
        if not dims or self._encoder_provider is None or self._encoder_failed:
            return {}
        if self._encoder is None:
            try:
                self._encoder = self._encoder_provider()
            except ModelUnavailable as e:
                log.warning("searching with BM25 only: %s", e.message)
                self._encoder_failed = True
                return {}
        if self._encoder.dim != dims.get("image"):
            return {}
        v = self._encoder.encode_texts([question])[0].tolist()
        return {name: v for name in dims if dims[name] == self._encoder.dim}

    def search(self, question: str, *, k: int = 5, collection: str | None = None,
               doc_ids: Sequence[str] | None = None) -> list[Hit]:
        """Top ``k`` pages for ``question``. Raises InputError on an empty question or bad ``k``."""
        question = question.strip()
        if not question:
            raise InputError("the question is empty; ask something, e.g. pagelens search \"linear models\"")
        if not 1 <= k <= 1000:
            raise InputError(f"k must be between 1 and 1000, got {k}")
        q = PageQuery(dense=self._dense(question), sparse=bm25.embed_query(question), limit=k,
                      collection=collection, doc_ids=list(doc_ids) if doc_ids is not None else None,
                      prefetch_limit=max(50, 4 * k))
        scored = self.index.query(q)
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
                            score=s.score, words=matching_words(rec.table, terms), caption=rec.page.caption))
        return hits
