"""GPU benchmark: SigLIP page-image embedding throughput, random weights, bf16.

Models: SigLIP2 ViT-B/16 @224 (35.4 GFLOP/image) and SigLIP So400m/14 @384 (670 GFLOP/image), built with
open_clip ``pretrained=None`` (real architecture, no download). Prints images/s and the ratio of achieved FLOP/s
to the GPU's dense bf16 ceiling (--peak-tflops, default 790 for an H100-class card as the issue states).

    python bench/gpu_siglip.py [--batch 128] [--seconds 20] [--peak-tflops 790]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = [("ViT-B-16-SigLIP2", 224, 35.4), ("ViT-SO400M-14-SigLIP-384", 384, 670.0)]


def bench(name: str, size: int, gflop: float, batch: int, seconds: float, peak_tflops: float) -> None:
    import open_clip
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = open_clip.create_model(name, pretrained=None).to(device).eval()
    visual = model.visual.to(torch.bfloat16) if device == "cuda" else model.visual
    x = torch.randn(batch, 3, size, size, device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    with torch.inference_mode():
        for _ in range(3):
            visual(x)
        if device == "cuda":
            torch.cuda.synchronize()
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds or n < 3:
            visual(x)
            n += 1
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
    ips = n * batch / dt
    achieved = ips * gflop / 1000
    print(f"{name}@{size} on {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}: batch {batch}, "
          f"{ips:,.0f} images/s, {achieved:,.1f} TFLOP/s = {achieved / peak_tflops:.1%} of {peak_tflops:g} TFLOP/s")
    del model, visual, x
    if device == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--peak-tflops", type=float, default=790.0)
    args = ap.parse_args()
    for name, size, gflop in MODELS:
        bench(name, size, gflop, args.batch, args.seconds, args.peak_tflops)


if __name__ == "__main__":
    main()
