"""SigLIP image/text encoder through open_clip. Loads by hub id (``hf-hub:timm/ViT-B-16-SigLIP2``), a local
checkpoint directory (``local-dir:/path`` or a plain path holding ``open_clip_config.json``), or a built-in
open_clip name (random weights; for benchmarks). Embeddings are float32 and L2-normalised."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import ModelUnavailable
from schemas.settings import EncoderSettings
from vlm.hub import weights_missing
from vlm.precision import use_bf16
from vlm.vectors import unit_rows

log = logging.getLogger(__name__)


def resolve_model_name(spec: str) -> str:
    """Settings value → open_clip model name. A directory path becomes ``local-dir:<path>``."""
    if spec.startswith(("hf-hub:", "local-dir:")):
        return spec
    p = Path(spec).expanduser()
    if p.is_dir():
        return f"local-dir:{p.resolve()}"
    return spec


WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _check_checkpoint_dir(path: Path, spec: str) -> None:
    """open_clip silently builds *random* weights from a dir without them; refuse that instead."""
    if not (path / "open_clip_config.json").is_file():
        raise ModelUnavailable(_unavailable(spec, "folder has no open_clip_config.json"))
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise ModelUnavailable(_unavailable(spec, f"folder has no weights ({WEIGHT_FILES[0]})"))


def _unavailable(model: str, why: str) -> str:
    """Short on purpose (two lines at 80 columns with the caller's prefix): it is shown on every ingest while
    the encoder is missing. The details go to the debug log."""
    return f"SigLIP {model}: {why}; set PAGELENS_ENCODER__MODEL=<checkpoint dir>, re-ingest"


def _load_failure(name: str, e: Exception) -> str:
    """Why open_clip could not load ``name``, in a few words."""
    from huggingface_hub import constants

    log.debug("open_clip could not load %s", name, exc_info=e)
    if name.startswith("hf-hub:") and constants.HF_HUB_OFFLINE:
        return "not in the offline HF cache"
    lines = str(e).strip().splitlines()
    first = lines[0] if lines else e.__class__.__name__
    return first if len(first) <= 50 else first[:49] + "…"


class SiglipEncoder:
    """A loaded SigLIP model. ``dim``: embedding size; ``version``: what produced the vectors."""

    def __init__(self, settings: EncoderSettings) -> None:
        self.name = resolve_model_name(settings.model)
        if self.name.startswith("hf-hub:") and (why := weights_missing(self.name.removeprefix("hf-hub:"),
                                                                        "open_clip_config.json")):
            raise ModelUnavailable(_unavailable(settings.model, why))  # said before torch is imported
        if self.name.startswith("local-dir:"):
            _check_checkpoint_dir(Path(self.name.removeprefix("local-dir:")), settings.model)
        import open_clip
        import torch

        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" \
            else settings.device
        t0 = time.perf_counter()
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(self.name)
            self.tokenizer = open_clip.get_tokenizer(self.name)
        except Exception as e:
            raise ModelUnavailable(_unavailable(settings.model, _load_failure(self.name, e))) from e
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.use_bf16 = use_bf16(settings.precision, self.device)
        self.batch_size = settings.batch_size
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["probe"]).to(self.device))
        self.dim = int(probe.shape[-1])
        image_size = getattr(self.model.visual, "image_size", None)
        self.image_size = int(image_size[0] if isinstance(image_size, tuple | list) else image_size or 224)
        self.version = f"open_clip:{settings.model}"
        log.info("SigLIP %s loaded in %.1fs on %s (dim %d, bf16=%s)", settings.model,
                 time.perf_counter() - t0, self.device, self.dim, self.use_bf16)

    def _autocast(self) -> Any:
        import torch

        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.use_bf16)

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 (H, W, 3) arrays → (n, dim) float32, L2-normalised. Batched by ``batch_size``."""
        import torch
        from PIL import Image

        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for s in range(0, len(images), self.batch_size):
            chunk = images[s:s + self.batch_size]
            x = torch.stack([self.preprocess(Image.fromarray(a)) for a in chunk]).to(self.device)
            with torch.inference_mode(), self._autocast():
                e = self.model.encode_image(x)
            out[s:s + len(chunk)] = unit_rows(e.float().cpu().numpy())
        return out

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → (n, dim) float32, L2-normalised."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(texts), self.batch_size):
            chunk = list(texts[s:s + self.batch_size])
            tokens = self.tokenizer(chunk).to(self.device)
            with torch.inference_mode(), self._autocast():
                e = self.model.encode_text(tokens)
            out[s:s + len(chunk)] = unit_rows(e.float().cpu().numpy())
        return out


def load_encoder(settings: EncoderSettings) -> SiglipEncoder:
    """Load the configured encoder. Raises ModelUnavailable (with how to fix it) when it cannot load."""
    return SiglipEncoder(settings)
