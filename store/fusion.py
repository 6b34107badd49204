"""Weighted distribution-based score fusion (DBSF), the engines' own method with a weight per list: each ranked
list's scores are normalised by their spread (mean ± 3 standard deviations → 0..1, as Qdrant's DBSF does), multiplied
by the list's weight and summed per page. Unlike RRF it keeps how sure each list is: a page far ahead in BM25 (a
title, a copied phrase) stays ahead, while a list that is unsure moves pages only a little (measured in BENCHMARKS.md,
issue 19). Pure: both vector stores fetch the lists and call this."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from store.vectors import ScoredPage


def dbsf(lists: Sequence[tuple[float, Sequence[ScoredPage]]], limit: int) -> list[ScoredPage]:
    """``lists``: (weight, pages best first with their own scores). The ``limit`` best pages by fused score (ties:
    first seen), each scored by it."""
    fused: dict[tuple[str, int], float] = {}
    first: dict[tuple[str, int], ScoredPage] = {}
    for weight, pages in lists:
        if not pages or weight <= 0:
            continue
        scores = np.asarray([p.score for p in pages], dtype=np.float64)
        mean, std = float(scores.mean()), float(scores.std(ddof=1)) if len(scores) > 1 else 0.0
        low, high = mean - 3 * std, mean + 3 * std
        span = high - low
        for p, s in zip(pages, scores, strict=True):
            key = (p.doc_id, p.page)
            norm = (float(s) - low) / span if span > 0 else 0.5
            fused[key] = fused.get(key, 0.0) + weight * norm
            first.setdefault(key, p)
    order = sorted(fused, key=lambda k: -fused[k])[:limit]
    return [ScoredPage(doc_id=k[0], page=k[1], collection=first[k].collection, score=fused[k]) for k in order]
