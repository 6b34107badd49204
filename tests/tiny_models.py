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


def build_tiny_siglip(out: Path, *, image_size: int = 64, width: int = 64, seed: int = 0, layers: int = 2,
                      head_width: int = 32) -> Path:
    """A SigLIP-architecture open_clip checkpoint dir (config + safetensors + a locally trained tokenizer),
    shaped like a downloaded ``timm/ViT-B-16-SigLIP2`` directory but tiny (benchmarks ask for the real vision-tower
    size: ``image_size=224, width=768, layers=12, head_width=64``). Returns ``out``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    hf_tok = train_tokenizer(out, max_length=16)

    cfg = copy.deepcopy(open_clip.get_model_config("ViT-B-16-SigLIP"))
    cfg["embed_dim"] = width
    # The real vision tower is timm's vit_base_patch16_siglip_224 (fixed size); open_clip's own ViT stands in
    # at tiny size. The text tower and the checkpoint layout are SigLIP's.
    cfg["vision_cfg"] = {"image_size": image_size, "patch_size": 16, "width": width, "layers": layers,
                         "head_width": head_width}
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


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# The chat template of the released Qwen2-VL / Qwen2.5-VL instruct checkpoints.
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_PRETOK = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
           r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


def build_tiny_qwen_vl(out: Path, *, qwen2: bool = False, max_pixels: int = 448 * 448) -> Path:
    """A tiny random-weight Qwen2.5-VL (or Qwen2-VL) checkpoint dir with a working processor, built offline:
    byte-level BPE trained locally + Qwen's special tokens and chat template. Load it with
    ``AutoModelForImageTextToText.from_pretrained(out)`` exactly like a downloaded checkpoint."""
    import torch
    from transformers import GenerationConfig, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    if qwen2:
        from transformers import Qwen2VLConfig as Cfg
        from transformers import Qwen2VLForConditionalGeneration as Model
        from transformers import Qwen2VLProcessor as Proc
    else:
        from transformers import Qwen2_5_VLConfig as Cfg  # type: ignore[assignment]
        from transformers import Qwen2_5_VLForConditionalGeneration as Model  # type: ignore[assignment]
        from transformers import Qwen2_5_VLProcessor as Proc  # type: ignore[assignment]

    out.mkdir(parents=True, exist_ok=True)
    tok = qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    processor = Proc(image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels),
                     tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_CHAT_TEMPLATE)
    vocab = (len(tok) + 63) // 64 * 64
    text_cfg = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                    bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                    pad_token_id=ids["<|endoftext|>"])
    if qwen2:
        vis_cfg: dict[str, Any] = dict(depth=2, embed_dim=64, hidden_size=64, mlp_ratio=2, num_heads=2,
                                       in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    else:
        vis_cfg = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=64,
                       in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                       fullatt_block_indexes=[1])
    cfg = Cfg(text_config=text_cfg, vision_config=vis_cfg, image_token_id=ids["<|image_pad|>"],
              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Model(cfg).eval()
    model.generation_config = GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                                               pad_token_id=ids["<|endoftext|>"], do_sample=False)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def qwen_tokenizer() -> Any:
    """Byte-level BPE trained locally on a few sentences and JSON answers, with Qwen's special tokens and chat
    template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOK), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    corpus = [*_CORPUS, '{"answer": "The total is 42", "found": true, "evidence": [{"page": 1, "quote": "total", '
                        '"bbox_2d": [10, 20, 300, 400]}]}', '{"value": null, "page": 1, "bbox_2d": null}'] * 10
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1200, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    tok = Qwen2Tokenizer(vocab=spec["vocab"], merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         unk_token=None, model_max_length=32768)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL], special_tokens=True)
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def build_tiny_colqwen2(out: Path, *, qwen25: bool = False, embedding_dim: int = 32,
                        max_pixels: int = 448 * 448) -> Path:
    """A tiny random-weight ColQwen2 (late interaction: a vector per image patch) checkpoint dir with its
    ColQwen2Processor, built offline (``../shared/recipes/tiny_colqwen2_offline.py``); ``qwen25``: a Qwen2.5-VL
    inside, as ColQwen2.5 checkpoints are. Load it with ``ColQwen2ForRetrieval.from_pretrained(out)``."""
    import torch
    from transformers import ColQwen2Config, ColQwen2ForRetrieval, ColQwen2Processor, Qwen2VLImageProcessor

    out.mkdir(parents=True, exist_ok=True)
    tok = qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    processor = ColQwen2Processor(image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels),
                                  tokenizer=tok)
    text = dict(vocab_size=(len(tok) + 63) // 64 * 64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision: dict[str, Any] = (
        dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=64, in_channels=3,
             patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1])
        if qwen25 else dict(depth=2, embed_dim=64, hidden_size=64, mlp_ratio=2, num_heads=2, in_channels=3,
                            patch_size=14, spatial_merge_size=2, temporal_patch_size=2))
    vlm = dict(model_type="qwen2_5_vl" if qwen25 else "qwen2_vl", text_config=text, vision_config=vision,
               image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
               vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    ColQwen2ForRetrieval(ColQwen2Config(vlm_config=vlm, embedding_dim=embedding_dim)).eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_colpali(out: Path, *, embedding_dim: int = 32, image_size: int = 56) -> Path:
    """A tiny random-weight ColPali (PaliGemma inside: a SigLIP vision tower and a Gemma) checkpoint dir with its
    ColPaliProcessor and a Gemma tokenizer trained locally, built offline. Load it with
    ``ColPaliForRetrieval.from_pretrained(out)``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import ColPaliConfig, ColPaliForRetrieval, ColPaliProcessor, GemmaTokenizer, SiglipImageProcessor

    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    bpe.train_from_iterator(list(_CORPUS) * 10, trainers.BpeTrainer(vocab_size=600, show_progress=False,
                                                                      special_tokens=["<pad>", "<eos>", "<bos>",
                                                                                      "<unk>"]))
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    images = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    images.image_seq_length = (image_size // 14) ** 2
    processor = ColPaliProcessor(image_processor=images, tokenizer=GemmaTokenizer(vocab=spec["vocab"], merges=merges))
    tok = processor.tokenizer  # with PaliGemma's <image>, location and segmentation tokens added
    vlm = dict(model_type="paligemma", projection_dim=64, hidden_size=64,
               image_token_index=tok.convert_tokens_to_ids("<image>"),
               text_config=dict(model_type="gemma", vocab_size=(len(tok) + 63) // 64 * 64, hidden_size=64,
                                intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=16),
               vision_config=dict(model_type="siglip_vision_model", hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=2, image_size=image_size, patch_size=14,
                                  projection_dim=64))
    torch.manual_seed(0)
    ColPaliForRetrieval(ColPaliConfig(vlm_config=vlm, embedding_dim=embedding_dim)).eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out
