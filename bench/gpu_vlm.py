"""GPU benchmark: the transformers backend on the real-size Qwen2.5-VL-3B architecture with random weights.

Builds Qwen2_5_VLForConditionalGeneration from the released 3B config shape (random weights, bf16, no download)
and a processor (tokenizer trained locally, Qwen's special tokens), renders a real page at 1024x1320 (inside the
pixel budget, multiples of 28), then measures prefill time per page, decode tokens/s, and the prefill's share of
the FLOP ceiling (~20.7 TFLOP per 1024x1320 page for the 3B; --peak-tflops, default 790).

    python bench/gpu_vlm.py [--tokens 256] [--peak-tflops 790]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Qwen2.5-VL-3B-Instruct's architecture (config.json of the release).
TEXT_3B = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, max_position_embeddings=128000)
VISION_3B = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                 in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                 fullatt_block_indexes=[7, 15, 23, 31])
PREFILL_TFLOP = 20.7


def main() -> None:
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from schemas.settings import VlmSettings
    from store.pages import render_for_model
    from tests.tiny_models import build_tiny_qwen_vl
    from vlm.backend import Message, VlmRequest
    from vlm.transformers_backend import TransformersBackend

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--peak-tflops", type=float, default=790.0)
    args = ap.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    d = Path(tempfile.mkdtemp()) / "qwen25vl-3b-random"
    build_tiny_qwen_vl(d, max_pixels=1024 * 1320)  # processor + tokenizer; the model is replaced below
    tiny = AutoModelForImageTextToText.from_pretrained(d)
    cfg = Qwen2_5_VLConfig(text_config={**tiny.config.text_config.to_dict(), **TEXT_3B,
                                        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                                            "mrope_section": [16, 24, 24]}},
                           vision_config=VISION_3B, image_token_id=tiny.config.image_token_id,
                           video_token_id=tiny.config.video_token_id,
                           vision_start_token_id=tiny.config.vision_start_token_id,
                           vision_end_token_id=tiny.config.vision_end_token_id, tie_word_embeddings=True)
    model = Qwen2_5_VLForConditionalGeneration(cfg).to(torch.bfloat16)
    model.generation_config = tiny.generation_config
    model.save_pretrained(d)
    print(f"built Qwen2.5-VL-3B architecture, {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params")
    del model, tiny
    backend = TransformersBackend(VlmSettings(model=str(d), device="cuda"))
    img = render_for_model(ROOT.parent / "shared/corpus/pdfs/R-intro.pdf", 10, max_pixels=1024 * 1320)
    print(f"page image {img.shape[1]}x{img.shape[0]} px")
    req = VlmRequest(messages=[Message("user", [img, "Describe the page."])], max_tokens=1)
    for _ in range(2):
        backend.generate(req)
    torch.cuda.synchronize()
    t = time.perf_counter()
    n = 5
    for _ in range(n):
        backend.generate(req)
    torch.cuda.synchronize()
    prefill = (time.perf_counter() - t) / n
    req_long = VlmRequest(messages=req.messages, max_tokens=args.tokens)
    t = time.perf_counter()
    out = backend.generate(req_long)
    torch.cuda.synchronize()
    decode_s = time.perf_counter() - t - prefill
    print(f"prefill per page: {prefill * 1000:.0f} ms ({out.prompt_tokens} prompt tokens) -> "
          f"{PREFILL_TFLOP / prefill:.0f} TFLOP/s = {PREFILL_TFLOP / prefill / args.peak_tflops:.1%} of "
          f"{args.peak_tflops:g}")
    rate = out.completion_tokens / max(decode_s, 1e-6)
    print(f"decode: {rate:.1f} tokens/s (batch 1, {out.completion_tokens} tokens)")


if __name__ == "__main__":
    main()
