"""The VLM backend protocol (messages with page images + an optional JSON Schema → text) and its registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from schemas.errors import ConfigError, ModelUnavailable
from schemas.settings import Settings

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    """``parts``: text strings and page images (RGB uint8 H×W×3, already at the size the model should see)."""

    role: Role
    parts: Sequence[str | np.ndarray]


@dataclass(frozen=True)
class VlmRequest:
    messages: Sequence[Message]
    json_schema: dict[str, Any] | None = None
    max_tokens: int = 768
    temperature: float = 0.0
    pages: Sequence[Any] = ()  # the PageInputs shown (image + words): models see the images in ``messages``; the
    #                            offline ``words`` backend answers from the words


@dataclass(frozen=True)
class VlmResponse:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    token_logprobs: list[float] | None = field(default=None, repr=False)

    @property
    def mean_token_prob(self) -> float | None:
        """exp(mean log-prob) of the generated tokens, when the backend gave log-probabilities."""
        if not self.token_logprobs:
            return None
        return float(np.exp(np.mean(self.token_logprobs)))


class VlmBackend(Protocol):
    model: str
    family: str

    def generate(self, request: VlmRequest) -> VlmResponse:
        """Run the model. Raises ModelHTTPError / ModelBehaviorError / ModelUnavailable."""
        ...


def _openai(s: Settings) -> VlmBackend:
    from vlm.openai_backend import OpenAIBackend

    if not s.vlm_url:
        raise ConfigError("the openai backend needs a server: set PAGELENS_VLM_URL (e.g. http://vllm:8000/v1)")
    return OpenAIBackend(s.vlm_url, s.vlm)


def _transformers(s: Settings) -> VlmBackend:
    from vlm.transformers_backend import TransformersBackend

    return TransformersBackend(s.vlm)


def _words(s: Settings) -> VlmBackend:
    from vlm.words_backend import WordsBackend

    return WordsBackend(latency_s=s.vlm.words_latency_s)


BACKENDS: dict[str, Callable[[Settings], VlmBackend]] = {"openai": _openai, "transformers": _transformers,
                                                         "words": _words}

HOW_TO_CONFIGURE = ("no VLM configured: set PAGELENS_VLM_URL=http://host:8000/v1 (a vLLM server) or "
                    "PAGELENS_VLM__BACKEND=transformers (README, \"A VLM\"); offline, without a model, "
                    "PAGELENS_VLM__BACKEND=words reads labelled values from the pages' words; search works without one")


def backend_name(s: Settings) -> str:
    """The backend the settings select ('none' when no VLM is configured)."""
    name = s.vlm.backend
    if name == "auto":
        from pathlib import Path

        name = "openai" if s.vlm_url else ("transformers" if Path(s.vlm.model).expanduser().is_dir() else "none")
    return name


def make_backend(s: Settings) -> VlmBackend:
    """Build the configured backend. Raises ModelUnavailable (with how to configure one) when none is set,
    ConfigError for an unknown name (listing the known ones)."""
    name = backend_name(s)
    if name == "none":
        raise ModelUnavailable(HOW_TO_CONFIGURE)
    if name not in BACKENDS:
        raise ConfigError(f"unknown VLM backend '{name}'; known: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](s)
