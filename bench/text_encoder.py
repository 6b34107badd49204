"""The text encoder's cost at ingest: pages/s (and chunks/s) embedding real pages' words on this machine, at the
shipped chunking and precision (auto: bf16 where the hardware has it), batch sizes 16/32/64 (and more with
--batches, for a GPU), chunks of 256, and fp32; on the runtime the defaults pick (OpenVINO on a CPU) and in torch.

    python bench/text_encoder.py [--pdf ../shared/corpus/pdfs/R-intro.pdf] [--model DIR] [--batches 16,32,64]
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
    ap.add_argument("--model", default=TextEncoderSettings().model, help="hub id or local dir")
    ap.add_argument("--batches", default="16,32,64", help="batch sizes to try at the shipped chunking")
    args = ap.parse_args()
    shipped = TextEncoderSettings()
    pages = [" ".join(w[4] for w in p.get_text("words")) for p in pymupdf.open(args.pdf)]
    print(f"{args.pdf.name}: {len(pages)} pages")
    print("| setting | load s | pages/s | chunks/s | chunks/page |")
    print("|---|---|---|---|---|")
    runs = [(f"chunks of {shipped.chunk_tokens}, batch {b}{' (shipped)' if int(b) == shipped.batch_size else ''}",
             TextEncoderSettings(model=args.model, batch_size=int(b))) for b in args.batches.split(",")]
    runs.append(("chunks of 256, batch 32", TextEncoderSettings(model=args.model, chunk_tokens=256)))
    runs.append(("chunks of 128, batch 32, fp32 (precision=fp32)", TextEncoderSettings(model=args.model,
                                                                                       precision="fp32")))
    runs.append(("chunks of 128, batch 32, torch (runtime=torch)", TextEncoderSettings(model=args.model,
                                                                                       runtime="torch")))
    runs.append(("chunks of 128, batch 32, torch fp32", TextEncoderSettings(model=args.model, runtime="torch",
                                                                            precision="fp32")))
    for label, settings in runs:
        t0 = time.perf_counter()
        enc = TextEncoder(settings)
        load = time.perf_counter() - t0
        enc.encode_pages(pages[:8])  # warm-up
        t0 = time.perf_counter()
        rows = enc.encode_pages(pages)
        dt = time.perf_counter() - t0
        chunks = sum(len(r) for r in rows)
        print(f"| {label} ({enc.device}, {enc.runtime}) | {load:.1f} | {len(pages) / dt:.1f} | {chunks / dt:.0f} "
              f"| {chunks / len(pages):.1f} |")


if __name__ == "__main__":
    main()
