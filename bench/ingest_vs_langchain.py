"""Whole-process ingest of one long PDF, side by side with what a user would otherwise pick (issue 10): PageLens's
``pagelens ingest`` (words with boxes, headings, BM25 vectors, Qdrant Edge + SQLite catalog, all persisted; no
encoder weights, no captions) with ``--workers 1`` and ``--workers 2``, against LangChain's
``PyMuPDFLoader(path).load()`` + ``BM25Retriever.from_documents`` (page text in memory) in its own venv.
Best of N runs each, alternating, each a fresh process (start-up and imports included).

    python -m venv /tmp/lc && /tmp/lc/bin/pip install langchain-community pymupdf rank_bm25
    python bench/ingest_vs_langchain.py bench/out/refman.pdf --langchain-python /tmp/lc/bin/python [--runs 3]
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
    args = ap.parse_args()
    import pymupdf

    pages = pymupdf.open(args.pdf).page_count
    pagelens = str(Path(sys.executable).with_name("pagelens"))
    best: dict[str, float] = {}
    for _ in range(args.runs):
        for workers in (1, 2):
            data = Path(tempfile.mkdtemp(prefix="pl-bench-"))
            env = {**os.environ, "PAGELENS_DATA_DIR": str(data), "PAGELENS_ENCODER__ENABLED": "false",
                   "PAGELENS_VLM__CAPTIONS": "false", "PAGELENS_VLM__BACKEND": "none"}
            try:
                dt, _ = timed([pagelens, "ingest", "--workers", str(workers), str(args.pdf)], env)
            finally:
                shutil.rmtree(data, ignore_errors=True)
            key = f"PageLens --workers {workers}"
            best[key] = min(best.get(key, dt), dt)
        if args.langchain_python:
            dt, out = timed([args.langchain_python, "-c", LANGCHAIN, str(args.pdf)])
            assert int(out.strip()) == pages
            best["LangChain PyMuPDFLoader + BM25Retriever"] = min(best.get("LangChain PyMuPDFLoader + BM25Retriever",
                                                                           dt), dt)
    print(f"{args.pdf.name}: {pages} pages, best of {args.runs}, whole process (start-up included)")
    for key, dt in best.items():
        print(f"  {key:45s} {dt:6.2f} s  {pages / dt:7.1f} pages/s")
    lc = best.get("LangChain PyMuPDFLoader + BM25Retriever")
    for workers in (1, 2):
        if lc:
            print(f"  ratio PageLens --workers {workers} / LangChain (pages/s): "
                  f"{lc / best[f'PageLens --workers {workers}']:.2f}")
    print(f"  --workers 2 vs --workers 1: {best['PageLens --workers 1'] / best['PageLens --workers 2']:.2f}x")


if __name__ == "__main__":
    main()
