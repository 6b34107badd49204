"""How the hybrid query should fuse BM25 with the text encoder's list, measured on the gold sets: every question's
two ranked lists (50 each, from the store as ingested) are fetched once, then fused every way tried — RRF at
several weights (Qdrant's weighted form), weighted DBSF (``store.fusion``, what ships), the query-length rule —
and scored by hit@5 / MRR, as ``pagelens eval retrieval`` scores the shipped one. Read-only on the data dir.

    PAGELENS_DATA_DIR=/tmp/store python bench/fusion_grid.py eval/manuals_questions.jsonl eval/manuals_outline.jsonl \\
        eval/manuals_phrases.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from store.fusion import dbsf
from store.vectors import ScoredPage

Lists = dict[str, list[ScoredPage]]
PREFETCH = 50


def rrf(lists: Lists, weights: dict[str, float], k: int = 60) -> list[tuple[str, int]]:
    score: dict[tuple[str, int], float] = {}
    for name, pages in lists.items():
        w = weights.get(name, 1.0)
        for r, p in enumerate(pages):
            score[(p.doc_id, p.page)] = score.get((p.doc_id, p.page), 0.0) + 1 / ((r + 1) / w + k - 1)
    return sorted(score, key=lambda key: -score[key])


def fused_dbsf(lists: Lists, weights: dict[str, float]) -> list[tuple[str, int]]:
    return [(s.doc_id, s.page) for s in dbsf([(weights.get(n, 1.0), ps) for n, ps in lists.items()], 100)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gold", nargs="+", type=Path)
    args = ap.parse_args()
    from app.service import Service
    from schemas.settings import load_settings
    from store import bm25
    from store.vectors import PageQuery

    svc = Service(load_settings(), create_data_dir=False)
    names = {d.doc_id: Path(d.name).name for d in svc.list_documents()}
    enc = svc.models.text_encoder()

    def lists_of(question: str) -> Lists:
        sparse = bm25.embed_query(question)
        words = enc.encode_queries([question])[0].tolist()
        out = {}
        for name, q in (("text", PageQuery(dense={}, sparse=sparse, limit=PREFETCH, fusion="dbsf")),
                        ("words", PageQuery(dense={"words": words}, sparse=None, limit=PREFETCH, fusion="dbsf"))):
            out[name] = [ScoredPage(names.get(s.doc_id, s.doc_id), s.page, s.collection, s.score)
                         for s in svc.index.query(q)] if (name != "text" or sparse.indices) else []
        return out

    golds = {g.stem: [json.loads(line) for line in g.read_text().splitlines() if line.strip()] for g in args.gold}
    fetched = {name: [(x, lists_of(x["question"])) for x in gold] for name, gold in golds.items()}
    s = svc.settings.text_encoder
    configs: list[tuple[str, Callable[[Lists, str], list[tuple[str, int]]]]] = [
        ("BM25 only", lambda ls, q: rrf({"text": ls["text"]}, {})),
        ("text encoder only", lambda ls, q: rrf({"words": ls["words"]}, {})),
    ]
    configs += [(f"RRF, words weight {w}", lambda ls, q, w=w: rrf(ls, {"words": w})) for w in (1.0, 0.3, 0.1, 0.03)]
    configs += [(f"DBSF, words weight {w}", lambda ls, q, w=w: fused_dbsf(ls, {"words": w}))
                for w in (1.0, 0.7, 0.5, 0.3)]
    configs.append((f"DBSF, {s.short_query_weight} for ≤ {s.short_query_words} words, else {s.weight} (shipped)",
                    lambda ls, q: fused_dbsf(ls, {"words": s.weight_for(q)})))

    def hit_rr(ranked: list[tuple[str, int]], x: dict) -> tuple[bool, float]:
        gold = {(x["doc"], p) for p in x["pages"]}
        rank = next((i for i, key in enumerate(ranked[:5]) if key in gold), None)
        return rank is not None, 0.0 if rank is None else 1 / (rank + 1)

    print("| fusion | " + " | ".join(f"{name} ({len(g)}) hit@5 / MRR" for name, g in golds.items()) + " |")
    print("|---|" + "---|" * len(golds))
    for label, fuse in configs:
        cells = []
        for name in golds:
            scores = [hit_rr(fuse(ls, x["question"]), x) for x, ls in fetched[name]]
            cells.append(f"{np.mean([h for h, _ in scores]):.3f} / {np.mean([r for _, r in scores]):.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    svc.close()


if __name__ == "__main__":
    main()
