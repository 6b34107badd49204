"""One owner for every model a process uses — the SigLIP image encoder, the text encoder, the late-interaction
reranker, the VLM — built once in the composition root (``app/service.py``) and handed to ingest, search, captions
and extraction. Each model is loaded
once, on first need, under one lock; when it cannot load, the reason is remembered (and logged once), so later
callers get the same answer at once instead of another attempt. Before anything heavy is imported, each loader
checks that its weights are there (``vlm.hub``): a missing model costs a file lookup, not an import of torch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from schemas.errors import ModelUnavailable
from schemas.settings import Settings

if TYPE_CHECKING:
    from vlm.backend import VlmBackend
    from vlm.late_interaction import LateInteractionEncoder
    from vlm.siglip import SiglipEncoder
    from vlm.text_encoder import TextEncoder

log = logging.getLogger(__name__)

ModelName = Literal["image_encoder", "text_encoder", "reranker", "vlm"]
T = TypeVar("T")


class Models:
    """The process's models. ``image_encoder()``, ``text_encoder()``, ``reranker()`` and ``vlm()`` return the
    model or raise ModelUnavailable with the (remembered) reason; ``maybe(...)`` gives None instead and
    ``why_not(name)`` the reason."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._loaded: dict[str, object] = {}
        self._failed: dict[str, ModelUnavailable] = {}

    def _get(self, name: ModelName, load: Callable[[], T]) -> T:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]  # type: ignore[return-value]
            if name in self._failed:
                raise self._failed[name]
            try:
                model = load()
            except ModelUnavailable as e:
                self._failed[name] = e
                log.info("%s unavailable: %s", name, e.message)
                raise
            self._loaded[name] = model
            return model

    def image_encoder(self) -> SiglipEncoder:
        def load() -> SiglipEncoder:
            if not self.settings.encoder.enabled:
                raise ModelUnavailable("the SigLIP encoder is disabled (PAGELENS_ENCODER__ENABLED=false)")
            from vlm.siglip import load_encoder

            return load_encoder(self.settings.encoder)

        return self._get("image_encoder", load)

    def text_encoder(self) -> TextEncoder:
        def load() -> TextEncoder:
            if not self.settings.text_encoder.enabled:
                raise ModelUnavailable("the text encoder is disabled (PAGELENS_TEXT_ENCODER__ENABLED=false)")
            from vlm.text_encoder import TextEncoder

            return TextEncoder(self.settings.text_encoder)

        return self._get("text_encoder", load)

    def reranker(self) -> LateInteractionEncoder:
        def load() -> LateInteractionEncoder:
            if not self.settings.rerank.enabled:
                raise ModelUnavailable("no late-interaction reranker is configured (PAGELENS_RERANK__MODEL)")
            from vlm.late_interaction import LateInteractionEncoder

            return LateInteractionEncoder(self.settings.rerank)

        return self._get("reranker", load)

    def vlm(self) -> VlmBackend:
        def load() -> VlmBackend:
            from vlm.backend import make_backend

            return make_backend(self.settings)

        return self._get("vlm", load)

    @staticmethod
    def maybe(get: Callable[[], T]) -> T | None:
        """``get()`` (e.g. ``models.maybe(models.image_encoder)``), or None when it cannot load (``why_not`` says
        why)."""
        try:
            return get()
        except ModelUnavailable:
            return None

    def why_not(self, name: ModelName) -> str | None:
        """Why ``name`` could not load (None: loaded, or not tried yet)."""
        e = self._failed.get(name)
        return e.message if e else None

    def loaded(self, name: ModelName) -> bool:
        return name in self._loaded
