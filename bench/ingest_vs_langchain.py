"""Whole-process ingest of one long PDF, side by side with what a user would otherwise pick (issues 10 and 22):
PageLens's ``pagelens ingest`` (words with boxes, headings, BM25 vectors, Qdrant Edge + SQLite catalog, all
persisted) against LangChain's ``PyMuPDFLoader(path).load()`` + ``BM25Retriever.from_documents`` (page text in
memory) in its own venv. PageLens runs **at the defaults** (the text encoder on, when its weights are there; one
reader per core), then with the text encoder off at each ``--workers`` count (SigLIP's weights are not on these
machines; captions off: no VLM). Best of N runs each, alternating, each a fresh process (start-up and imports
included).

    python -m venv /tmp/lc && /tmp/lc/bin/pip install langchain-community pymupdf rank_bm25
    python bench/ingest_vs_langchain.py bench/out/refman.pdf --langchain-python /tmp/lc/bin/python [--runs 3]
        [--workers 1,2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANGCHAIN = """
import sys, warnings
warnings.simplefilter("ignore")
from langchain_community.document_loaders import PyMuPDFLoader
from langchain_community.retrievers import BM25Retriever
docs = PyMuPDFLoader(sys.argv[1]).load()
BM25Retriever.from_documents(docs)
print(len(docs))
"""


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pdf", type=Path)
    ap.add_argument("--langchain-python", help="python of a venv with langchain-community, pymupdf, rank_bm25")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="reader counts for the text-encoder-off rows")
    args = ap.parse_args()
    import pymupdf

    pages = pymupdf.open(args.pdf).page_count
    pagelens = [sys.executable, "-m", "app.cli"]  # what the `pagelens` script runs, whatever is installed
    base = {**os.environ, "PAGELENS_VLM__CAPTIONS": "false", "PAGELENS_VLM__BACKEND": "none",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    rows: list[tuple[str, list[str], dict[str, str]]] = [("PageLens, defaults", [], {})]
    rows += [(f"PageLens --workers {w}, text encoder off", ["--workers", w],
              {"PAGELENS_TEXT_ENCODER__ENABLED": "false"}) for w in args.workers.split(",")]
    peer = "LangChain PyMuPDFLoader + BM25Retriever"
    best: dict[str, float] = {}
    for _ in range(args.runs):
        for label, flags, env in rows:
            data = Path(tempfile.mkdtemp(prefix="pl-bench-"))
            try:
                dt, _ = timed([*pagelens, "ingest", *flags, str(args.pdf)],
                              {**base, **env, "PAGELENS_DATA_DIR": str(data)})
            finally:
                shutil.rmtree(data, ignore_errors=True)
            best[label] = min(best.get(label, dt), dt)
        if args.langchain_python:
            dt, out = timed([args.langchain_python, "-c", LANGCHAIN, str(args.pdf)])
            assert int(out.strip()) == pages
            best[peer] = min(best.get(peer, dt), dt)
    print(f"{args.pdf.name}: {pages} pages, best of {args.runs}, whole process (start-up included), "
          f"{os.cpu_count()} cores")
    print("| run | wall | pages/s | vs LangChain |\n|---|---|---|---|")
    for key, dt in best.items():
        ratio = f"{best[peer] / dt:.2f}" if peer in best else "—"
        print(f"| {key} | {dt:.2f} s | {pages / dt:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
