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
from vlm.hub import looks_like_path, weights_missing

log = logging.getLogger(__name__)

HOW_TO_FIX = ("download the weights to a local folder (e.g. huggingface-cli download <hub id> --local-dir DIR) "
              "and set PAGELENS_VLM__MODEL=DIR, or serve the model with vLLM and set PAGELENS_VLM_URL")


def check_model_available(model: str) -> None:
    """Fail in about a second, before torch loads, when ``model`` cannot be loaded: a path that does not
    exist, a hub id missing from the cache in offline mode (HF_HUB_OFFLINE), or an unreachable hub
    (huggingface_hub would retry for ~40 s). Raises ModelUnavailable saying how to fix it."""
    if Path(model).expanduser().is_dir():
        return
    if looks_like_path(model):
        raise ModelUnavailable(f"no model directory at {Path(model).expanduser().absolute()}; {HOW_TO_FIX}")
    if why := weights_missing(model, "config.json"):
        raise ModelUnavailable(f"the VLM '{model}' cannot be loaded: {why}; {HOW_TO_FIX}")


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
        self._cond = threading.Condition()  # guards the queue below; one batch runs at a time per model
        self._queue: list[_Pending] = []
        self._running = False
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
        """Run the model on ``request``. Concurrent callers (the caption pass and batch extraction keep
        ``vlm.concurrency`` requests in flight) are batched: whoever finds the model idle runs the requests waiting
        then — up to ``vlm.batch_size`` of one kind (free text, or JSON under any schemas; same token budget and
        temperature) — in one padded ``generate``, each row under its own grammar."""
        mine = _Pending(request)
        with self._cond:
            self._queue.append(mine)
        while True:
            with self._cond:
                while not mine.done and self._running:
                    self._cond.wait()
                if mine.done:
                    break
                self._running = True
                batch = self._take()
            try:
                self._run_or_split(batch)
            except BaseException as e:  # every caller in the batch gets the error, none waits forever
                for p in batch:
                    if not p.done:
                        p.error = e
            finally:
                with self._cond:
                    for p in batch:
                        p.done = True
                    self._running = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.response is not None
        return mine.response

    def _run_or_split(self, batch: list[_Pending]) -> None:
        """Run the batch; if it fails as a batch (out of GPU memory for the padded batch, one odd request), run
        its rows one by one so that each caller gets its own result or its own error."""
        try:
            self._run(batch)
            return
        except Exception:
            if len(batch) == 1:
                raise
            log.warning("a batch of %d requests failed; running them one by one", len(batch), exc_info=True)
        self._free_memory()
        for p in batch:
            try:
                self._run([p])
            except Exception as e:
                p.error = e

    def _free_memory(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.empty_cache()

    def _take(self) -> list[_Pending]:
        """The oldest waiting request and up to ``batch_size - 1`` others that can share its generate call."""
        first = self._queue[0]
        batch = [p for p in self._queue if p.key == first.key][:max(1, self.s.batch_size)]
        self._queue = [p for p in self._queue if p not in batch]
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        import torch
        from PIL import Image

        texts, images = [], []
        for p in batch:
            msgs = []
            for m in p.request.messages:
                content: list[dict[str, Any]] = []
                for part in m.parts:
                    if isinstance(part, str):
                        content.append({"type": "text", "text": part})
                    else:
                        images.append(Image.fromarray(np.asarray(part)))
                        content.append({"type": "image"})
                msgs.append({"role": m.role, "content": content})
            texts.append(self._processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        tok = self._processor.tokenizer
        tok.padding_side = "left"  # decoder-only generation: the prompts end where the new tokens begin
        if tok.pad_token is None:  # some tokenizers have none: pad with the end token (the rows are masked there)
            tok.pad_token = tok.eos_token
        inputs = self._processor(text=texts, images=images or None, padding=len(batch) > 1,
                                 return_tensors="pt").to(self.device)
        req = batch[0].request
        kwargs: dict[str, Any] = {"max_new_tokens": req.max_tokens, "do_sample": req.temperature > 0,
                                  "output_logits": True, "return_dict_in_generate": True}
        if req.temperature > 0:
            kwargs["temperature"] = req.temperature
        if req.json_schema is not None:
            from xgrammar.contrib.hf import LogitsProcessor

            grammars = [self._grammar(p.request.json_schema or {}) for p in batch]
            kwargs["logits_processor"] = [LogitsProcessor(grammars)]  # new per call, one grammar per row
        with torch.inference_mode():
            out = self._model.generate(**inputs, **kwargs)
        n_prompt = inputs["input_ids"].shape[1]
        stop = self._stop_ids()
        for row, p in enumerate(batch):
            new = out.sequences[row, n_prompt:].tolist()
            end = next((k + 1 for k, t in enumerate(new) if t in stop), len(new))  # its own end, not the batch's
            new = new[:end]
            # log-prob of each chosen token under the model's own (unconstrained) distribution
            lps = [float(torch.log_softmax(out.logits[k][row].float(), -1)[t]) for k, t in enumerate(new)]
            n_own = int(inputs["attention_mask"][row].sum()) if "attention_mask" in inputs else n_prompt
            p.response = VlmResponse(text=tok.decode(new, skip_special_tokens=True), model=self.model,
                                     prompt_tokens=n_own, completion_tokens=len(new), token_logprobs=lps)

    def _stop_ids(self) -> set[int]:
        """Tokens that end a row: the generation config's EOS ids and the pad token (rows that ended early)."""
        eos = self._model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = self._processor.tokenizer.pad_token_id
        return ids | ({pad} if pad is not None else set())


class _Pending:
    """One caller's request waiting for (or in) a batch."""

    def __init__(self, request: VlmRequest) -> None:
        self.request = request
        # requests that can share one generate call: free text or JSON, the same token budget and temperature
        self.key = (request.json_schema is None, request.max_tokens, request.temperature)
        self.response: VlmResponse | None = None
        self.error: BaseException | None = None
        self.done = False
