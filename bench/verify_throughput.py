"""Verification throughput (fields/s) on real pages: values that are on the page (1-3 word phrases, numbers),
and values that are not (the worst case: exact, date and fuzzy passes all run). Pages: R-intro.pdf's text
layer, and an OCR'd rendering of one of its pages.

    python bench/verify_throughput.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pymupdf

from grounding.normalise import normalise
from grounding.verifier import locate
from ingest.ocr import ocr_words
from ingest.pdf import render, text_words
from schemas.coords import BBox
from schemas.wordtable import WordTable

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pdfs"


def run(label: str, tables: list, present: bool, n_fields: int = 3000) -> None:
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(n_fields):
        t = tables[rng.integers(len(tables))]
        if present and len(t) > 3:
            i, n = int(rng.integers(len(t) - 3)), int(rng.integers(1, 4))
            value = " ".join(t.texts[i:i + n])
            if not normalise(value):  # leader dots and the like: nothing to verify
                continue
            b = t.boxes[i]
            near = BBox.clamped(float(b[0]) - 0.02, float(b[1]) - 0.01, float(b[2]) + 0.05, float(b[3]) + 0.01)
        else:
            value, near = f"Invoice INV-{rng.integers(10**6)} total {rng.integers(10**4)}.00 EUR", None
        cases.append((t, value, near))
    t0 = time.perf_counter()
    statuses: dict[str, int] = {}
    for t, value, near in cases:
        s = locate(value, t, near).status
        statuses[s] = statuses.get(s, 0) + 1
    dt = time.perf_counter() - t0
    print(f"{label:38s} {len(cases) / dt:8.0f} fields/s  ({dt / len(cases) * 1000:.2f} ms/field)  {statuses}")


def main() -> None:
    doc = pymupdf.open(CORPUS / "R-intro.pdf")
    tables = [text_words(doc[i]) for i in range(doc.page_count)]
    print(f"R-intro.pdf: {len(tables)} pages, {np.mean([len(t) for t in tables]):.0f} words/page (text layer)")
    run("text layer, values on the page", tables, True)
    run("text layer, values absent (worst case)", tables, False, 1000)
    ocr = [ocr_words(render(doc[i], 144, 4_000_000)) for i in (10, 20)]
    print(f"OCR: 2 pages, {np.mean([len(t) for t in ocr]):.0f} words/page")
    run("OCR words, values on the page", ocr, True)
    run("OCR words, values absent (worst case)", ocr, False, 500)
    words = [w for t in tables for w in t.texts]
    boxes = np.concatenate([t.boxes for t in tables])
    reps = -(-100_000 // len(words))
    big = WordTable((words * reps)[:100_000], np.tile(boxes, (reps, 1))[:100_000], np.ones(100_000, np.float32),
                    "text_layer")
    for value in ("the R-intro sentence that is not there at all", big.texts[77_777] + " " + big.texts[77_778]):
        t0 = time.perf_counter()
        loc = locate(value, WordTable(big.texts, big.boxes, big.conf, big.source, big.lines))  # a fresh page
        print(f"100,000-word page, first lookup: {(time.perf_counter() - t0) * 1000:.1f} ms ({loc.status})")


if __name__ == "__main__":
    main()
