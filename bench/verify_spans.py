"""The verifier on born-digital pages: random 3–6-word spans of the corpus PDFs, and values that are absent.

    python bench/verify_spans.py [--spans 2000]

Present: a run of 3–6 consecutive PyMuPDF words (as the text layer gives them), looked for with no hint box and
with a sloppy hint box around it; a hit is status != unverified and IoU ≥ 0.5 with the union of those words
(also reported: IoU ≥ 0.9). Absent: spans of *another* PDF whose words do not occur in that order on the page,
plus invoice-like strings, numbers and dates; all must come back ``unverified``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pymupdf

from grounding.verifier import locate
from ingest.pdf import text_words
from schemas.wordtable import WordTable
from tests.grounding.spans import draw_span, sloppy, span_box

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pdfs"


def tables() -> dict[str, list[WordTable]]:
    out = {}
    for pdf in sorted(CORPUS.glob("*.pdf")):
        doc = pymupdf.open(pdf)
        out[pdf.name] = [t for t in (text_words(p) for p in doc) if len(t) >= 12]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=2000)
    a = ap.parse_args()
    rng = np.random.default_rng(7)
    docs = tables()
    names = list(docs)
    hits = {"no hint": [0, 0], "hint": [0, 0]}
    unamb = [0, 0]  # no hint, spans the page has only once: [hits, count]
    present = 0
    t0 = time.perf_counter()
    while present < a.spans:
        name = names[rng.integers(len(names))]
        t = docs[name][rng.integers(len(docs[name]))]
        span = draw_span(t, rng)
        if span is None:
            continue
        i, n, value = span
        present += 1
        g = span_box(t, i, n)
        for label, near in (("no hint", None), ("hint", sloppy(g))):
            loc = locate(value, t, near)
            ok = loc.status != "unverified" and loc.bbox is not None
            hits[label][0] += ok and loc.bbox is not None and loc.bbox.iou(g) >= 0.5
            hits[label][1] += ok and loc.bbox is not None and loc.bbox.iou(g) >= 0.9
            if near is None and not loc.ambiguous:
                unamb[0] += ok and loc.bbox is not None and loc.bbox.iou(g) >= 0.5
                unamb[1] += 1
    dt = time.perf_counter() - t0
    for label, (h5, h9) in hits.items():
        print(f"present spans, {label:8s}: IoU>=0.5 {h5 / present:.4f}  IoU>=0.9 {h9 / present:.4f}  (n={present})")
    print(f"present spans, no hint, found once on the page: IoU>=0.5 {unamb[0] / max(unamb[1], 1):.4f} "
          f"(n={unamb[1]}; the others are ambiguous without a hint box)")
    absent = wrong = 0
    fakes = ["Invoice INV-{} total {}.00 EUR", "{} Main Street, Springfield {}", "Order {} shipped on 2031-02-{:02d}"]
    while absent < a.spans:
        name = names[rng.integers(len(names))]
        t = docs[name][rng.integers(len(docs[name]))]
        if absent % 2:
            other = docs[names[(names.index(name) + 1) % len(names)]]
            o = other[rng.integers(len(other))]
            n = int(rng.integers(3, 7))
            i = int(rng.integers(len(o) - n))
            value = " ".join(o.texts[i:i + n])
            if " ".join(value.lower().split()) in " ".join(t.texts).lower() or sum(c.isalnum() for c in value) < 6:
                continue
        else:
            f = fakes[rng.integers(len(fakes))]
            value = f.format(int(rng.integers(10**5, 10**6)), int(rng.integers(1, 28)))
        absent += 1
        loc = locate(value, t)
        if loc.status != "unverified":
            wrong += 1
            if wrong <= 5:
                print(f"  absent but {loc.status}: {value!r} ~ {loc.matched_text!r} ({loc.match_score})")
    print(f"absent values: {absent - wrong}/{absent} unverified = {(absent - wrong) / absent:.4f}")
    print(f"({present * 2} present lookups in {dt:.1f} s)")


if __name__ == "__main__":
    main()
