"""Tiny random-weight models built offline, saved as checkpoint directories and loaded through the very same
path a real checkpoint uses (open_clip ``local-dir:``; transformers ``from_pretrained(dir)``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

_CORPUS = [
    "a photo of a cat", "an invoice with a table of totals", "page two of the annual report",
    "figure 3 shows the revenue by quarter", "the quick brown fox jumps over the lazy dog",
    "linear regression models in R", "data import and export", "reference card for octave",
] * 40


def train_tokenizer(out: Path, max_length: int) -> Any:
    """A small SentencePiece-style (Unigram) tokenizer trained locally, saved to ``out`` as a HF fast tokenizer
    (what open_clip's HFTokenizer loads from a checkpoint dir)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                     model_max_length=max_length)
    hf_tok.save_pretrained(out)
    return hf_tok


def build_tiny_siglip(out: Path, *, image_size: int = 64, width: int = 64, seed: int = 0) -> Path:
    """A SigLIP-architecture open_clip checkpoint dir (config + safetensors + a locally trained tokenizer),
    shaped like a downloaded ``timm/ViT-B-16-SigLIP2`` directory but tiny. Returns ``out``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    hf_tok = train_tokenizer(out, max_length=16)

    cfg = copy.deepcopy(open_clip.get_model_config("ViT-B-16-SigLIP"))
    cfg["embed_dim"] = width
    # The real vision tower is timm's vit_base_patch16_siglip_224 (fixed size); open_clip's own ViT stands in
    # at tiny size. The text tower and the checkpoint layout are SigLIP's.
    cfg["vision_cfg"] = {"image_size": image_size, "patch_size": 16, "width": width, "layers": 2,
                         "head_width": 32}
    cfg["text_cfg"].update({"context_length": 16, "vocab_size": len(hf_tok), "width": width, "heads": 2,
                            "layers": 2, "pad_id": hf_tok.pad_token_id, "hf_tokenizer_name": str(out)})
    cfg["text_cfg"].pop("tokenizer_kwargs", None)
    (out / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
                           "resize_mode": "squash"},
    }))
    torch.manual_seed(seed)
    model = open_clip.create_model("local-dir:" + str(out), pretrained=None, load_weights=False)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(out / "open_clip_model.safetensors"))
    return out
