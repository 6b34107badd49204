"""SigLIP through open_clip, loaded from a checkpoint dir exactly as a downloaded one would be."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import ModelUnavailable
from schemas.settings import EncoderSettings
from vlm.siglip import load_encoder, resolve_model_name


def test_loads_local_dir_and_embeds_normalised(tiny_siglip: Path) -> None:
    enc = load_encoder(EncoderSettings(model=str(tiny_siglip), precision="fp32", batch_size=2))
    assert resolve_model_name(str(tiny_siglip)) == f"local-dir:{tiny_siglip.resolve()}"
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(100, 80), (792, 612), (50, 300)]]
    e = enc.encode_images(imgs)
    assert e.shape == (3, enc.dim) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert not np.allclose(e[0], e[1]), "different pages, different vectors"
    again = enc.encode_images(imgs[:1])
    assert np.allclose(again[0], e[0], atol=1e-5), "batching does not change a page's vector"
    t = enc.encode_texts(["linear models", "linear models", "a cat"])
    assert t.shape == (3, enc.dim) and np.allclose(t[0], t[1]) and not np.allclose(t[0], t[2])


def test_bf16_close_to_fp32(tiny_siglip: Path) -> None:
    img = [np.random.default_rng(1).integers(0, 255, (200, 160, 3), dtype=np.uint8)]
    a = load_encoder(EncoderSettings(model=str(tiny_siglip), precision="fp32")).encode_images(img)
    b = load_encoder(EncoderSettings(model=str(tiny_siglip), precision="bf16")).encode_images(img)
    assert float(a[0] @ b[0]) > 0.99


def test_unavailable_is_clear_and_fast(tmp_path: Path, tiny_siglip: Path) -> None:
    t = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="PAGELENS_ENCODER__MODEL"):
        load_encoder(EncoderSettings(model="hf-hub:timm/ViT-B-16-SigLIP2"))
    assert time.perf_counter() - t < 15, "no long hub retries"
    no_weights = tmp_path / "ckpt"
    shutil.copytree(tiny_siglip, no_weights)
    (no_weights / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelUnavailable, match="has no weights"):
        load_encoder(EncoderSettings(model=str(no_weights)))
    (no_weights / "open_clip_config.json").write_text(json.dumps({"nope": 1}))
    with pytest.raises(ModelUnavailable):
        load_encoder(EncoderSettings(model=str(no_weights)))
    with pytest.raises(ModelUnavailable):
        load_encoder(EncoderSettings(model=str(tmp_path / "does-not-exist")))
