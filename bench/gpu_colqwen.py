"""GPU benchmark: late-interaction page embedding (ColQwen2 at its real size, Qwen2-VL-2B inside, random weights,
bf16) — the ``patches`` stage's pages/s, through PageLens's own encoder (``vlm.late_interaction``: processor,
padding dropped, hierarchical pooling by 3) on real rendered pages.

The model is built from a ColQwen2Config with Qwen2-VL-2B's dimensions (what vidore/colqwen2-v1.0-hf loads) and
saved, then loaded through ``from_pretrained(dir)`` as a downloaded checkpoint is; the tokenizer is a small one
trained locally (the vocabulary only sizes the embedding table, kept at the real 151,936 rows). Prints pages/s for
the model alone and for the whole encoder, FLOP per page (2 × parameters × tokens, vision and language parts
counted separately) and the ratio of achieved FLOP/s to the GPU's dense bf16 ceiling (--peak-tflops, 790 for an
H100-class card). On a CPU (no GPU) use --pages 2: a page costs about a minute there.

    python bench/gpu_colqwen.py [--pdf R-intro.pdf] [--pages 64] [--batch 8] [--max-pixels 602112] [--peak-tflops 790]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pdfs"


def build(out: Path, device: str) -> None:
    import torch
    from transformers import ColQwen2Config, ColQwen2ForRetrieval, ColQwen2Processor, Qwen2VLImageProcessor

    from tests.tiny_models import QWEN_SPECIAL, qwen_tokenizer

    tok = qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    ColQwen2Processor(image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=768 * 28 * 28),
                      tokenizer=tok).save_pretrained(out)
    vlm = dict(model_type="qwen2_vl",
               text_config=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                 "mrope_section": [16, 24, 24]},
                                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                                pad_token_id=ids["<|endoftext|>"]),
               vision_config=dict(depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16,
                                  in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
               image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
               vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = ColQwen2ForRetrieval(ColQwen2Config(vlm_config=vlm, embedding_dim=128)).eval()
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-pixels", type=int, default=768 * 28 * 28)
    ap.add_argument("--peak-tflops", type=float, default=790.0)
    ap.add_argument("--pdf", type=Path, default=CORPUS / "R-intro.pdf", help="the pages (the first 100, cycled)")
    a = ap.parse_args()
    import numpy as np
    import torch

    from schemas.settings import RerankSettings
    from store.pages import render_for_model
    from vlm.late_interaction import LateInteractionEncoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    images = [render_for_model(a.pdf, 1 + i % 100, max_pixels=a.max_pixels) for i in range(a.pages)]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        build(Path(d), device)
        enc = LateInteractionEncoder(RerankSettings(model=d, max_pixels=a.max_pixels, batch_size=a.batch))
        print(f"built + saved + loaded in {time.perf_counter() - t0:.0f} s on {device} ({enc.dtype})")
    model = enc.model
    vision = sum(p.numel() for p in model.vlm.visual.parameters())
    language = sum(p.numel() for n, p in model.named_parameters() if "visual" not in n and "embed_tokens" not in n)
    inputs = enc.processor(images=[__import__("PIL.Image").Image.fromarray(images[0])], return_tensors="pt")
    patches = int(inputs["image_grid_thw"].prod())
    tokens = int(inputs["input_ids"].shape[1])
    flop = 2 * vision * patches + 2 * language * tokens
    print(f"parameters: vision {vision / 1e9:.2f} B, language {language / 1e9:.2f} B; a page: {patches} patches → "
          f"{tokens} tokens; {flop / 1e12:.2f} TFLOP a page")
    enc.encode_pages(images[:2 * a.batch])  # warm-up
    from PIL import Image

    from vlm.late_interaction import pool_rows

    def timed(fn: object) -> tuple[float, object]:
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()  # type: ignore[operator]
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, out

    batches = [images[s:s + a.batch] for s in range(0, len(images), a.batch)]
    s_prep, inputs = timed(lambda: [enc.processor(images=[Image.fromarray(im) for im in b], return_tensors="pt")
                                    for b in batches])
    s_model, rows = timed(lambda: [r for x in inputs for r in enc._rows(x)])  # type: ignore[attr-defined]
    s_pool, _ = timed(lambda: [pool_rows(r, enc.pool_factor) for r in rows])  # type: ignore[attr-defined]
    print(f"apart, pages/s: processor {a.pages / s_prep:.1f}, model (inputs to the GPU and vectors back) "
          f"{a.pages / s_model:.1f}, pooling {a.pages / s_pool:.1f}")
    for overlap in (False, True):
        s, out = timed(lambda: enc.encode_pages(images, overlap=overlap))  # noqa: B023
        rate = a.pages / s
        print(f"whole encoder, {'overlapped' if overlap else 'one step at a time'} (render excluded): "
              f"{rate:.2f} pages/s, {np.mean([len(r) for r in out]):.0f} vectors a page after pooling; "  # type: ignore[attr-defined]
              f"{rate * flop / 1e12:.1f} TFLOP/s = {rate * flop / 1e12 / a.peak_tflops:.1%} of "
              f"{a.peak_tflops:.0f} dense bf16")
    print(f"the model alone: {a.pages / s_model * flop / 1e12 / a.peak_tflops:.1%} of the ceiling")


if __name__ == "__main__":
    main()
