"""Calibrated confidence (issue 21, item 3): does a fitted profile make "0.9" mean "right nine times in ten"?

    python bench/calibration.py [--work /tmp/calibration-bench]

1. Receipts (../shared/corpus/receipts, 48 real scans, OCR) with the offline ``words`` backend and
   eval/receipt.schema.json: fit on every other receipt (``eval/receipts_gold.py --half a``), score the other half,
   and the other way round; ECE of the raw (verifier) confidence and of the calibrated one, and how often a field
   at confidence ≥ 0.9 is right. Then the same pooled over 4 folds of all 48 receipts (by receipt: 144 fitting
   rows a fold), which says more than one 96-field half can.
2. Fitting time: synthetic labelled sets of 1,000 and 10,000 fields (``tests/grounding/test_calibration.py``'s
   generator), Platt and isotonic.

The receipts are ingested into ``--work`` once (OCR, ~2 min here); later runs reuse them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "eval"))

RECEIPTS = ROOT.parent / "shared" / "corpus" / "receipts"
SCHEMA = str(ROOT / "eval" / "receipt.schema.json")


def held_out(fit_rows: list, test_rows: list, method: str = "auto") -> dict[str, float]:
    from grounding import calibration as gc

    p = gc.fit(fit_rows, model="m", schema_hash="s", source="bench", method=method)  # type: ignore[arg-type]
    got = [(gc.probability(p, r.field, r.kind), r.right) for r in test_rows]
    raw = [(gc.evidence(r.field)["raw"], r.right) for r in test_rows]
    sure = [ok for c, ok in got if c >= 0.9]
    return {"fields": len(test_rows), "ece_raw": gc.ece(raw), "ece": gc.ece(got), "method": p.method,
            "sure": len(sure), "sure_right": sum(sure) / len(sure) if sure else float("nan")}


def receipts(work: Path) -> None:
    from receipts_gold import receipts_extract_gold  # type: ignore[import-not-found]

    from app import evaluation as ev
    from app.calibration import labels_from_gold
    from app.service import Service

    os.environ.update(PAGELENS_DATA_DIR=str(work / "data"), PAGELENS_VLM__BACKEND="words", HF_HUB_OFFLINE="1")
    gold = [ev.ExtractGold.model_validate(g) for g in receipts_extract_gold(RECEIPTS)]
    svc = Service()
    per: dict[str, list] = {}
    try:
        svc.ingest([RECEIPTS / "img" / g.doc for g in gold])
        for g in gold:
            per[g.id], _, errors = labels_from_gold(svc, [g], SCHEMA)
            assert not errors, errors
    finally:
        svc.close()
    rows = [r for g in gold for r in per[g.id]]
    ids = sorted(per)
    a = [r for i in ids[0::2] for r in per[i]]
    b = [r for i in ids[1::2] for r in per[i]]
    print(f"receipts: {len(ids)} receipts, {len(rows)} fields, {sum(r.right for r in rows)} right (words backend)")
    print("| fit on → scored on | fields | method | ECE raw | ECE calibrated | fields at ≥ 0.9 | right at ≥ 0.9 |")
    print("|---|---|---|---|---|---|---|")
    for name, fit_rows, test_rows in (("half a → half b", a, b), ("half b → half a", b, a)):
        m = held_out(fit_rows, test_rows)
        print(f"| {name} | {m['fields']} | {m['method']} | {m['ece_raw']:.3f} | {m['ece']:.3f} | {m['sure']} | "
              f"{m['sure_right']:.3f} |")
    from grounding import calibration as gc

    got, raw = [], []
    for k in range(4):
        test_ids = set(ids[k::4])
        fit_rows = [r for i in ids if i not in test_ids for r in per[i]]
        test_rows = [r for i in test_ids for r in per[i]]
        p = gc.fit(fit_rows, model="m", schema_hash="s", source="bench")
        got += [(gc.probability(p, r.field, r.kind), r.right) for r in test_rows]
        raw += [(gc.evidence(r.field)["raw"], r.right) for r in test_rows]
    sure = [ok for c, ok in got if c >= 0.9]
    print(f"| 4 folds of 48 (pooled) | {len(got)} | auto | {gc.ece(raw):.3f} | {gc.ece(got):.3f} | {len(sure)} | "
          f"{sum(sure) / max(1, len(sure)):.3f} |")


def fit_time() -> None:
    from grounding import calibration as gc
    from tests.grounding.test_calibration import _sample

    print("\n| labelled fields | method | fit (s) |\n|---|---|---|")
    for n in (1000, 10_000):
        rows, _ = _sample(n, seed=0)
        for method in ("platt", "isotonic"):
            t = time.perf_counter()
            gc.fit(rows, model="m", schema_hash="s", source="bench", method=method)  # type: ignore[arg-type]
            print(f"| {n:,} | {method} | {time.perf_counter() - t:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/calibration-bench"))
    ap.add_argument("--skip-receipts", action="store_true")
    args = ap.parse_args()
    if not args.skip_receipts:
        receipts(args.work)
    fit_time()


if __name__ == "__main__":
    main()
