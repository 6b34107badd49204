"""Real-size SigLIP checkpoints with random weights, built offline as open_clip ``local-dir`` checkpoints (the
same layout as a downloaded ``timm/ViT-B-16-SigLIP2``), with a locally trained tokenizer standing in for the
hub one. For benchmarks: the architecture and FLOPs are real, the numbers are not."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_random_siglip(out: Path, name: str = "ViT-B-16-SigLIP2") -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    from tests.tiny_models import train_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(out, max_length=64)
    cfg = json.loads(json.dumps(open_clip.get_model_config(name)))
    cfg["text_cfg"]["hf_tokenizer_name"] = str(out)
    cfg["text_cfg"].pop("tokenizer_kwargs", None)
    cfg["text_cfg"]["pad_id"] = tok.pad_token_id
    (out / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "resize_mode": "squash"},
    }))
    torch.manual_seed(0)
    model = open_clip.create_model("local-dir:" + str(out), pretrained=None, load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    return out
