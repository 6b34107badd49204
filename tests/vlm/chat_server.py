"""A real HTTP server on loopback that speaks the OpenAI chat-completions API, for testing the openai backend.

Replies follow a script (status, body, delay) or, when given a TransformersBackend, come from a real (tiny)
model: data-URL images are decoded and the request's JSON schema constrains decoding, as vLLM does."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

Reply = Callable[[dict[str, Any]], Response]


def completion(text: str, *, logprobs: list[float] | None = None, model: str = "served-model") -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": lp} for lp in logprobs]}
    return {"id": "cmpl-1", "object": "chat.completion", "model": model, "choices": [choice],
            "usage": {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333}}


def ok(text: str, **kw: Any) -> Reply:
    return lambda _body: JSONResponse(completion(text, **kw))


def status(code: int, text: str = "overloaded") -> Reply:
    return lambda _body: PlainTextResponse(text, status_code=code)


def slow(seconds: float, then: Reply) -> Reply:
    def reply(body: dict[str, Any]) -> Response:
        time.sleep(seconds)
        return then(body)

    return reply


@dataclass
class Gauge:
    """Requests in flight on a server that answers after ``latency`` seconds: ``peak`` is the most at once."""

    latency: float
    then: Reply
    slots: int | None = None  # like vLLM's queue limit: beyond this many at once, 429 at once
    now: int = 0
    peak: int = 0
    refused: int = 0
    started: list[float] = field(default_factory=list)  # when each request arrived (time.time())
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, body: dict[str, Any]) -> Response:
        with self.lock:
            self.started.append(time.time())
            if self.slots is not None and self.now >= self.slots:
                self.refused += 1
                return PlainTextResponse("too many requests", status_code=429, headers={"Retry-After": "0.2"})
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.latency)
        with self.lock:
            self.now -= 1
        return self.then(body)


@dataclass
class ChatServer:
    script: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    model_backend: Any = None
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(req: Request) -> Response:
            body = await req.json()
            self.requests.append(body)
            if self.script:
                return await _run_sync(self.script.pop(0), body)
            if self.model_backend is not None:
                return await _run_sync(self._from_model, body)
            return JSONResponse({"error": "script exhausted"}, status_code=500)

        return app

    def _from_model(self, body: dict[str, Any]) -> Response:
        from vlm.backend import Message, VlmRequest

        msgs = []
        for m in body["messages"]:
            parts: list[Any] = []
            content = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
            for c in content:
                if c["type"] == "text":
                    parts.append(c["text"])
                else:
                    from PIL import Image

                    raw = base64.b64decode(c["image_url"]["url"].split(",", 1)[1])
                    parts.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
            msgs.append(Message(m["role"], parts))
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema") \
            or (body.get("structured_outputs") or {}).get("json")
        resp = self.model_backend.generate(VlmRequest(messages=msgs, json_schema=schema,
                                                      max_tokens=body.get("max_tokens", 512)))
        return JSONResponse(completion(resp.text, logprobs=resp.token_logprobs, model=body["model"]))


async def _run_sync(fn: Reply, body: dict[str, Any]) -> Response:
    import anyio

    return await anyio.to_thread.run_sync(fn, body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def chat_server(model_backend: Any = None) -> Iterator[ChatServer]:
    cs = ChatServer(model_backend=model_backend)
    with serve(cs.app()) as url:
        cs.url = url + "/v1"
        yield cs
