"""Build a known-item retrieval gold set from PDFs' body text: a few consecutive words copied from a page are
the question, that page the answer — what a user does who remembers a phrase. A check that ranking tuned for
section titles does not cost body-text questions.

    python eval/phrase_gold.py PDF... [--per-doc 40] [--seed 7] > gold.jsonl

Pages are drawn at random (seeded), pages with fewer than 60 words skipped; the phrase is 3-6 words from the
page's text layer in MuPDF's order (it may cross a line break, as a copied phrase does)."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import pymupdf


def phrase_items(pdf: Path, per_doc: int, rng: random.Random) -> list[dict]:
    doc = pymupdf.open(str(pdf))
    out = []
    for pno in rng.sample(range(doc.page_count), min(per_doc, doc.page_count)):
        words = doc[pno].get_text().split()
        if len(words) < 60:
            continue
        i = rng.randrange(10, len(words) - 10)
        out.append({"id": f"{pdf.name}:{pno + 1}", "question": " ".join(words[i:i + rng.randint(3, 6)]),
                    "doc": pdf.name, "pages": [pno + 1]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pdfs", nargs="+", type=Path)
    ap.add_argument("--per-doc", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    for pdf in args.pdfs:
        for item in phrase_items(pdf, args.per_doc, rng):
            sys.stdout.write(json.dumps(item) + "\n")


if __name__ == "__main__":
    main()
