"""Ingest throughput on a long real PDF (default: octave.pdf, 1,158 pages; fetch with bench/corpus.sh).

Prints pages/s for:
  1. bare PyMuPDF in one process: render at the encoder DPI + words (the baseline),
  2. the PageLens pipeline without the encoder: words + BM25 + Qdrant Edge + SQLite catalog,
  3. the pipeline with a real-size SigLIP2 ViT-B/16 (random weights, built offline) on this machine's device.
Target: (2) >= 0.7 x (1).

    python bench/ingest_throughput.py [PDF] [--no-encoder] [--pages N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pymupdf

from app.service import Service
from schemas.settings import EncoderSettings, IngestSettings, Settings

HERE = Path(__file__).resolve().parent


def bare_pymupdf(pdf: Path, dpi: float, pages: int) -> float:
    t = time.perf_counter()
    doc = pymupdf.open(pdf)
    n = min(pages, doc.page_count)
    for i in range(n):
        page = doc[i]
        pix = page.get_pixmap(matrix=pymupdf.Matrix(dpi / 72, dpi / 72), colorspace=pymupdf.csRGB, alpha=False)
        np.frombuffer(pix.samples, np.uint8)
        page.get_text("words")
    return n / (time.perf_counter() - t)


def pipeline(pdf: Path, encoder: str | None, workers: int) -> tuple[float, float, int]:
    """(pages/s from the file's first page to its last, pages/s wall incl. start-up, pages)."""
    data = Path(tempfile.mkdtemp(prefix="pagelens-bench-"))
    enc = EncoderSettings(model=encoder) if encoder else EncoderSettings(enabled=False)
    svc = Service(Settings(data_dir=data, encoder=enc, ingest=IngestSettings()))
    if encoder:
        svc.ingestor.encoder()  # load outside the timed part
    t = time.perf_counter()
    report = svc.ingest([pdf], workers=workers)
    wall = time.perf_counter() - t
    f = report.files[0]
    assert f.status == "ingested", f
    svc.close()
    shutil.rmtree(data, ignore_errors=True)
    return f.pages / f.seconds, f.pages / wall, f.pages


def real_size_siglip() -> str:
    from bench.random_siglip import build_random_siglip

    out = HERE / "out" / "siglip2-b16-random"
    if not (out / "open_clip_model.safetensors").exists():
        build_random_siglip(out, "ViT-B-16-SigLIP2")
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pdf", nargs="?", default=str(HERE / "out" / "octave.pdf"))
    ap.add_argument("--no-encoder", action="store_true")
    ap.add_argument("--pages", type=int, default=10**9, help="pages for the bare baseline")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    pdf = Path(args.pdf)
    dpi = IngestSettings().render_dpi
    print(f"file: {pdf.name}  cpus: {os.cpu_count()}  render dpi: {dpi:g}")
    bare = bare_pymupdf(pdf, dpi, args.pages)
    print(f"bare PyMuPDF (render {dpi:g} dpi + words), 1 process: {bare:8.1f} pages/s")
    rate, wall, n = pipeline(pdf, None, args.workers)
    print(f"pipeline, no encoder (words+BM25+store):      {rate:8.1f} pages/s  ({wall:.1f} pages/s incl. start-up; "
          f"{n} pages)  ratio to bare: {rate / bare:.2f}")
    if not args.no_encoder:
        rate, wall, n = pipeline(pdf, real_size_siglip(), args.workers)
        print(f"pipeline + SigLIP2 B/16 (random weights):    {rate:8.1f} pages/s  ({wall:.1f} incl. start-up)")


if __name__ == "__main__":
    main()
