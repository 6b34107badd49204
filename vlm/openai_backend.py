"""Any OpenAI-compatible chat-completions server; vLLM is the production one. Images go as JPEG data URLs (the
caller renders them at the pixel budget, at sizes the model keeps unchanged); the JSON Schema goes as
``response_format`` json_schema, or as vLLM's ``structured_outputs`` (>= 0.10.2). Timeouts, bounded retries with
exponential backoff on transport errors, 408/429/5xx, a concurrency limit, and token log-probabilities when the
server offers them. Several replicas (``PAGELENS_VLM_URL=http://a:8000/v1,http://b:8000/v1``: vLLM on each GPU or
node) share the requests round-robin, and a request that fails on one is retried on the next."""

from __future__ import annotations

import base64
import io
import itertools
import logging
import random
import threading
import time
from typing import Any

import httpx
import numpy as np

from schemas.errors import ModelBehaviorError, ModelHTTPError
from schemas.settings import VlmSettings
from vlm.backend import Message, VlmRequest, VlmResponse
from vlm.families import detect_family

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


JPEG_QUALITY = 90


def backoff(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry ``attempt + 1``: the server's Retry-After when it gives one in seconds (at most
    30), else exponential from 0.5 s (at most 8) with full jitter, so requests refused together do not come back
    together."""
    if retry_after:
        try:
            return min(30.0, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return random.uniform(0.5, 1.0) * min(8.0, 0.5 * 2 ** attempt)


def image_data_url(image: np.ndarray) -> str:
    """A page image as a JPEG data URL: several times faster to encode than PNG and a fraction of its size; at
    quality 90 the text of a page at the pixel budget stays as legible to the model."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def to_openai_messages(messages: list[Message] | tuple[Message, ...] | Any) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if all(isinstance(p, str) for p in m.parts):
            out.append({"role": m.role, "content": "\n".join(m.parts)})  # type: ignore[arg-type]
            continue
        content: list[dict[str, Any]] = []
        for p in m.parts:
            if isinstance(p, str):
                content.append({"type": "text", "text": p})
            else:
                content.append({"type": "image_url", "image_url": {"url": image_data_url(p)}})
        out.append({"role": m.role, "content": content})
    return out


class OpenAIBackend:
    def __init__(self, base_url: str, settings: VlmSettings, client: httpx.Client | None = None) -> None:
        self.replicas = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
        self.base_url = ", ".join(self.replicas)  # for messages
        self._turn = itertools.count()  # round-robin over the replicas (next() is atomic in CPython)
        self.s = settings
        self.model = settings.model
        self.family: str = detect_family(settings.model) if settings.family == "auto" else settings.family
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._client = client or httpx.Client(timeout=httpx.Timeout(settings.timeout_s, connect=10.0),
                                              headers=headers)
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._logprobs = True  # dropped for good once the server refuses them

    def body(self, request: VlmRequest) -> dict[str, Any]:
        """The chat-completions request body for ``request``."""
        body: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(request.messages),
                                "max_tokens": request.max_tokens, "temperature": request.temperature}
        if request.json_schema is not None:
            if self.s.structured_outputs == "structured_outputs":
                body["structured_outputs"] = {"json": request.json_schema}
            else:
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "pagelens_output", "schema": request.json_schema, "strict": True}}
        if self._logprobs:
            body["logprobs"] = True
        return body

    def generate(self, request: VlmRequest) -> VlmResponse:
        with self._slots:
            return self._generate(request)

    def _generate(self, request: VlmRequest) -> VlmResponse:
        first = next(self._turn)
        last = ""
        wait = 0.0
        for attempt in range(self.s.max_retries + 1):
            base = self.replicas[(first + attempt) % len(self.replicas)]  # a retry goes to the next replica
            url = f"{base}/chat/completions"
            if attempt:  # another replica not yet tried this request: go at once; else back off as for one
                time.sleep(min(wait, 0.1) if attempt < len(self.replicas) else wait)
            try:
                r = self._client.post(url, json=self.body(request))
            except httpx.TimeoutException as e:
                last = f"timed out after {self.s.timeout_s:g} s ({e.__class__.__name__})"
                wait = backoff(attempt)
                continue
            except httpx.TransportError as e:
                last = f"cannot reach {base} ({e})"
                wait = backoff(attempt)
                continue
            if r.status_code == 400 and self._logprobs and "logprob" in r.text.lower():
                self._logprobs = False  # this server does not do log-probabilities: ask without them
                return self._generate(request)
            if r.status_code in RETRY_STATUS:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                wait = backoff(attempt, r.headers.get("retry-after"))
                continue
            if r.status_code >= 400:
                raise ModelHTTPError(f"the VLM server refused the request: HTTP {r.status_code}: {r.text[:300]}",
                                     status=r.status_code)
            return self._parse(r)
        raise ModelHTTPError(f"the VLM server at {self.base_url} failed after {self.s.max_retries + 1} tries: "
                             f"{last}. Check that it is up (PAGELENS_VLM_URL) and serving {self.model}.")

    def _parse(self, r: httpx.Response) -> VlmResponse:
        try:
            data = r.json()
            choice = data["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("message.content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ModelBehaviorError(f"the VLM server sent a malformed reply ({e})", raw_output=r.text[:2000]) from e
        usage = data.get("usage") or {}
        lp = None
        content_lp = ((choice.get("logprobs") or {}).get("content")) if isinstance(choice, dict) else None
        if isinstance(content_lp, list):
            lp = [float(t["logprob"]) for t in content_lp if isinstance(t, dict) and "logprob" in t]
        return VlmResponse(text=text, model=str(data.get("model", self.model)),
                           prompt_tokens=int(usage.get("prompt_tokens", 0) or 0),
                           completion_tokens=int(usage.get("completion_tokens", 0) or 0), token_logprobs=lp)
