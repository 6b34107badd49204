"""Weighted distribution-based score fusion (DBSF), the engines' own method with a weight per list: each ranked
list's scores are normalised by their spread (mean ± 3 standard deviations → 0..1, as Qdrant's DBSF does), multiplied
by the list's weight and summed per page. Unlike RRF it keeps how sure each list is: a page far ahead in BM25 (a
title, a copied phrase) stays ahead, while a list that is unsure moves pages only a little (measured in BENCHMARKS.md,
issue 19). Pure: both vector stores fetch the lists and call this."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from store.vectors import ScoredPage


def dbsf(lists: Sequence[tuple[float, Sequence[ScoredPage]]], limit: int, window: int = 0) -> list[ScoredPage]:
    """``lists``: (weight, pages best first with their own scores). The ``limit`` best pages by fused score (ties:
    first seen), each scored by it. A list of one page (or of equal scores) counts each as its best (1 × weight):
    a rare word only one page has must not lose to the top of an unsure dense list. ``window``: how many pages each
    list was asked for; a shorter list (BM25 matched fewer pages) is measured as if the pages it lacks scored 0,
    which they did — so its few hits stand far above its spread, as sure as they are."""
    fused: dict[tuple[str, int], float] = {}
    first: dict[tuple[str, int], ScoredPage] = {}
    for weight, pages in lists:
        if not pages or weight <= 0:
            continue
        scores = np.asarray([p.score for p in pages], dtype=np.float64)
        stats = np.concatenate([scores, np.zeros(max(0, window - len(scores)))])
        mean, std = float(stats.mean()), float(stats.std(ddof=1)) if len(stats) > 1 else 0.0
        low, high = mean - 3 * std, mean + 3 * std
        span = high - low
        for p, s in zip(pages, scores, strict=True):
            key = (p.doc_id, p.page)
            norm = (float(s) - low) / span if span > 0 else 1.0  # one page, or all alike: each is the list's best
            fused[key] = fused.get(key, 0.0) + weight * norm
            first.setdefault(key, p)
    order = sorted(fused, key=lambda k: -fused[k])[:limit]
    return [ScoredPage(doc_id=k[0], page=k[1], collection=first[k].collection, score=fused[k]) for k in order]
