"""The text encoder's cost at ingest: pages/s (and chunks/s) embedding real pages' words on this machine, at the
shipped chunking and with mean pooling, batch sizes 16/32/64.

    python bench/text_encoder.py [--pdf ../shared/corpus/pdfs/R-intro.pdf]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pymupdf

from schemas.settings import TextEncoderSettings
from vlm.text_encoder import TextEncoder


def main() -> None:
    ap = argparse.ArgumentParser()
    corpus = Path(__file__).resolve().parents[1].parent / "shared/corpus/pdfs"
    ap.add_argument("--pdf", type=Path, default=corpus / "R-intro.pdf")
    args = ap.parse_args()
    pages = [" ".join(w[4] for w in p.get_text("words")) for p in pymupdf.open(args.pdf)]
    print(f"{args.pdf.name}: {len(pages)} pages")
    print("| setting | load s | pages/s | chunks/s | chunks/page |")
    print("|---|---|---|---|---|")
    for label, settings in [("chunks of 128 (shipped), batch 32", TextEncoderSettings()),
                            ("chunks of 128, batch 16", TextEncoderSettings(batch_size=16)),
                            ("chunks of 128, batch 64", TextEncoderSettings(batch_size=64)),
                            ("chunks of 256, batch 32", TextEncoderSettings(chunk_tokens=256))]:
        t0 = time.perf_counter()
        enc = TextEncoder(settings)
        load = time.perf_counter() - t0
        enc.encode_pages(pages[:8])  # warm-up
        t0 = time.perf_counter()
        rows = enc.encode_pages(pages)
        dt = time.perf_counter() - t0
        chunks = sum(len(r) for r in rows)
        print(f"| {label} | {load:.1f} | {len(pages) / dt:.1f} | {chunks / dt:.0f} | {chunks / len(pages):.1f} |")


if __name__ == "__main__":
    main()
