"""PageLens retrieval against the simplest lexical peer, in one run, on the same gold questions.

The peer is LangChain's default PDF RAG (PyMuPDFLoader page text + BM25Retriever, i.e. rank_bm25's BM25Okapi over
``str.split()``: case-sensitive, punctuation attached), re-implemented here without LangChain itself (same
library, same preprocessing). PageLens runs as users run it: the PDFs ingested into one store with default
settings (SigLIP off: no weights here), then ``pagelens eval retrieval``'s own code.

    pip install -e '.[bench]'          # rank_bm25
    bash bench/corpus.sh               # octave.pdf, refman.pdf and the R manuals into bench/out/
    python bench/retrieval_peers.py --gold eval/manuals_outline.jsonl bench/out/*.pdf [-k 5] [--data DIR]

Prints hit@k per document and overall for both, and PageLens's MRR/nDCG; ``--out`` writes PageLens's report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pymupdf


def langchain_default(pdfs: list[Path], gold: list, k: int) -> dict[str, bool]:
    from rank_bm25 import BM25Okapi

    keys, corpus = [], []
    for pdf in pdfs:
        for i, page in enumerate(pymupdf.open(str(pdf))):
            keys.append((pdf.name, i + 1))
            corpus.append(page.get_text().split())
    bm25 = BM25Okapi(corpus)
    out = {}
    for g in gold:
        scores = bm25.get_scores(g.question.split())
        top = np.argsort(-scores, kind="stable")[:k]
        out[g.id] = any(keys[i] == (g.doc, p) for i in top for p in g.pages)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pdfs", nargs="+", type=Path)
    ap.add_argument("--gold", type=Path, required=True)
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--data", type=Path, help="PageLens data dir (reused when already ingested); default: temp")
    ap.add_argument("--out", type=Path, help="write PageLens's eval report (JSON) here")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    os.environ.setdefault("PAGELENS_DATA_DIR", str(args.data or Path(tmp.name) / "data"))
    os.environ.setdefault("PAGELENS_ENCODER__ENABLED", "false")
    os.environ.setdefault("PAGELENS_VLM__CAPTIONS", "false")
    from app import evaluation as ev
    from app.service import Service

    gold, bad = ev.load_gold(args.gold, ev.RetrievalGold)
    names = {p.name for p in args.pdfs}
    gold = [g for g in gold if g.doc in names]
    svc = Service()
    t0 = time.perf_counter()
    report = svc.ingest(list(args.pdfs))
    pages = sum(f.pages for f in report.files)
    print(f"PageLens store: {len(report.files)} PDFs, {pages} pages "
          f"({sum(f.status == 'ingested' for f in report.files)} ingested now, {time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    pl = ev.eval_retrieval(svc, gold, k=args.k)
    pl_s = time.perf_counter() - t0
    svc.close()
    t0 = time.perf_counter()
    lc = langchain_default(list(args.pdfs), gold, args.k)
    lc_s = time.perf_counter() - t0

    pl_hit = {i["id"]: i["hit"] for i in pl["items"]}
    by_doc: dict[str, list[str]] = defaultdict(list)
    for g in gold:
        by_doc[g.doc].append(g.id)
    print(f"\n{'document':<16} {'questions':>9} {'PageLens':>9} {'LangChain':>10}   (hit@{args.k})")
    for doc, ids in sorted(by_doc.items()):
        print(f"{doc:<16} {len(ids):9d} {np.mean([pl_hit.get(i, False) for i in ids]):9.3f} "
              f"{np.mean([lc[i] for i in ids]):10.3f}")
    print(f"{'all':<16} {len(gold):9d} {np.mean([pl_hit.get(g.id, False) for g in gold]):9.3f} "
          f"{np.mean([lc[g.id] for g in gold]):10.3f}")
    m = pl["metrics"]
    print(f"\nPageLens: MRR {m['mrr']:.3f}, nDCG@{args.k} {m[f'ndcg@{args.k}']:.3f}, "
          f"{1000 * pl_s / max(1, len(gold)):.1f} ms/question (search + catalog); "
          f"peer: {1000 * lc_s / max(1, len(gold)):.1f} ms/question (incl. building its index)")
    only_lc = [g.id for g in gold if lc[g.id] and not pl_hit.get(g.id)]
    print(f"peer finds, PageLens misses ({len(only_lc)}): {', '.join(only_lc[:25])}")
    if args.out:
        args.out.write_text(json.dumps(pl, indent=1))
    if bad:
        print(f"{len(bad)} bad gold lines skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
