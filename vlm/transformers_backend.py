"""In-process VLM (Qwen2.5-VL class) through transformers: ``AutoModelForImageTextToText`` +
``AutoProcessor`` from a hub id or local dir, JSON-Schema-constrained decoding with xgrammar, bf16 on GPU."""

from __future__ import annotations

import json
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import ModelUnavailable
from schemas.settings import VlmSettings
from vlm.backend import VlmRequest, VlmResponse
from vlm.families import detect_family

log = logging.getLogger(__name__)

HOW_TO_FIX = ("download the weights to a local folder (e.g. huggingface-cli download <hub id> --local-dir DIR) "
              "and set PAGELENS_VLM__MODEL=DIR, or serve the model with vLLM and set PAGELENS_VLM_URL")


def looks_like_path(model: str) -> bool:
    """A local path rather than a hub id (``org/name``): starts with ``/``, ``.`` or ``~``, uses ``\\``, or has
    more than one ``/``."""
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


def check_model_available(model: str) -> None:
    """Fail in about a second, before torch loads, when ``model`` cannot be loaded: a path that does not
    exist, a hub id missing from the cache in offline mode (HF_HUB_OFFLINE), or an unreachable hub
    (huggingface_hub would retry for ~40 s). Raises ModelUnavailable saying how to fix it."""
    if Path(model).expanduser().is_dir():
        return
    if looks_like_path(model):
        raise ModelUnavailable(f"no model directory at {Path(model).expanduser().absolute()}; {HOW_TO_FIX}")
    from huggingface_hub import constants, try_to_load_from_cache

    from vlm.hub import hub_unreachable

    if constants.HF_HUB_OFFLINE:
        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise ModelUnavailable(f"the VLM '{model}' is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                                   f"is set; {HOW_TO_FIX}")
    elif why := hub_unreachable():
        raise ModelUnavailable(f"the VLM '{model}' cannot be downloaded: {why}; or {HOW_TO_FIX}")


def _first_line(e: Exception) -> str:
    """``Class: first line of the message`` (library errors run to many lines of advice)."""
    lines = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {lines[0][:300] if lines else ''}"


class TransformersBackend:
    def __init__(self, settings: VlmSettings) -> None:
        """Load ``settings.model``. Raises ModelUnavailable, saying what to do, when it cannot."""
        check_model_available(settings.model)
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as e:
            raise ModelUnavailable("the transformers backend needs: pip install 'pagelens[vlm]'") from e
        self.s = settings
        self.model = settings.model
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" else settings.device
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        try:
            model = AutoModelForImageTextToText.from_pretrained(settings.model, dtype=dtype)
            self._model = model.to(self.device)  # type: ignore[arg-type]
            self._processor = AutoProcessor.from_pretrained(settings.model)
        except Exception as e:
            raise ModelUnavailable(
                f"the VLM '{settings.model}' could not be loaded ({_first_line(e)}); {HOW_TO_FIX}") from e
        self._model.eval()
        mtype = getattr(self._model.config, "model_type", "")
        self.family: str = detect_family(mtype or settings.model) if settings.family == "auto" else settings.family
        self._lock = threading.Lock()  # one generate at a time per in-process model
        self._tokenizer_info: Any = None

    def _grammar(self, schema: dict[str, Any]) -> Any:
        import xgrammar as xgr

        if self._tokenizer_info is None:
            vocab = self._model.config.get_text_config().vocab_size
            self._tokenizer_info = xgr.TokenizerInfo.from_huggingface(self._processor.tokenizer, vocab_size=vocab)
            self._compile = lru_cache(maxsize=64)(
                lambda text: xgr.GrammarCompiler(self._tokenizer_info, max_threads=2)
                .compile_json_schema(text, any_whitespace=False))
        return self._compile(json.dumps(schema, sort_keys=True))

    def generate(self, request: VlmRequest) -> VlmResponse:
        import torch
        from PIL import Image

        msgs, images = [], []
        for m in request.messages:
            content: list[dict[str, Any]] = []
            for p in m.parts:
                if isinstance(p, str):
                    content.append({"type": "text", "text": p})
                else:
                    images.append(Image.fromarray(np.asarray(p)))
                    content.append({"type": "image"})
            msgs.append({"role": m.role, "content": content})
        text = self._processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        inputs = self._processor(text=[text], images=images or None, return_tensors="pt").to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_tokens, "do_sample": request.temperature > 0,
                                  "output_logits": True, "return_dict_in_generate": True}
        if request.temperature > 0:
            kwargs["temperature"] = request.temperature
        if request.json_schema is not None:
            from xgrammar.contrib.hf import LogitsProcessor

            kwargs["logits_processor"] = [LogitsProcessor(self._grammar(request.json_schema))]  # new per call
        with self._lock, torch.inference_mode():
            out = self._model.generate(**inputs, **kwargs)
        n_prompt = inputs["input_ids"].shape[1]
        new = out.sequences[0, n_prompt:]
        # log-prob of each chosen token under the model's own (unconstrained) distribution
        lps = [float(torch.log_softmax(lg[0].float(), -1)[tok]) for lg, tok in zip(out.logits, new, strict=False)]
        decoded = self._processor.tokenizer.decode(new, skip_special_tokens=True)
        return VlmResponse(text=decoded, model=self.model, prompt_tokens=int(n_prompt),
                           completion_tokens=len(new), token_logprobs=lps)
