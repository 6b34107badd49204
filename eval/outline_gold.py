"""Build a retrieval gold set from PDFs' own outlines: each question is a section title (as the outline spells
it), its answer the page the outline points to (every page, when the title occurs more than once in that PDF).

    python eval/outline_gold.py PDF... [--per-doc 100] > gold.jsonl

``--per-doc N`` takes N distinct titles evenly spread over each outline (all of them when it has fewer).
Lines: ``{"id", "question", "doc", "pages"}`` — the format of ``pagelens eval retrieval --gold``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pymupdf


def outline_items(pdf: Path, per_doc: int) -> list[dict]:
    doc = pymupdf.open(str(pdf))
    pages: dict[str, set[int]] = {}
    for _level, title, page in doc.get_toc(simple=True):
        title = " ".join(str(title).split())
        if len(title) >= 2 and 1 <= page <= doc.page_count:
            pages.setdefault(title, set()).add(page)
    titles = list(pages)  # outline order, each title once
    if len(titles) > per_doc:
        step = len(titles) / per_doc
        titles = [titles[int(i * step)] for i in range(per_doc)]
    return [{"id": f"{pdf.stem}:{n}", "question": t, "doc": pdf.name, "pages": sorted(pages[t])}
            for n, t in enumerate(titles)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pdfs", nargs="+", type=Path)
    ap.add_argument("--per-doc", type=int, default=100)
    args = ap.parse_args()
    for pdf in args.pdfs:
        for item in outline_items(pdf, args.per_doc):
            sys.stdout.write(json.dumps(item) + "\n")


if __name__ == "__main__":
    main()
