"""Where a model's weights come from, decided before anything heavy is imported: a local folder, the Hugging Face
cache, or the hub (when it can be reached). A model that cannot load this way costs a file lookup, not an import of
torch (``weights_missing``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from schemas.errors import ModelUnavailable

log = logging.getLogger(__name__)


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (DNS/connect, 3 s), or None. huggingface_hub would otherwise retry for
    ~35 s before failing. None in offline mode (HF_HUB_OFFLINE), where the local cache is used."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "", url.port or 443), timeout=3).close()
    except OSError as e:
        log.debug("model hub %s unreachable: %s", url.hostname, e)
        return f"hub {url.hostname} unreachable; for a cached copy set HF_HUB_OFFLINE=1"
    return None


def looks_like_path(model: str) -> bool:
    """A local path rather than a hub id (``org/name``): starts with ``/``, ``.`` or ``~``, uses ``\\``, or has
    more than one ``/``."""
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


def in_cache(repo_id: str, marker: str) -> bool:
    """Whether the Hugging Face cache holds ``marker`` (e.g. ``config.json``) of ``repo_id``."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, marker), str)


def weights_missing(repo_id: str, marker: str) -> str | None:
    """Why the hub model ``repo_id`` cannot load right now, found without importing any ML library: offline
    (HF_HUB_OFFLINE) and ``marker`` not in the cache, or not cached and the hub unreachable. None when it can."""
    from huggingface_hub import constants

    if in_cache(repo_id, marker):
        return None
    if constants.HF_HUB_OFFLINE:
        return "not in the offline HF cache (HF_HUB_OFFLINE is set)"
    return hub_unreachable()


def local_dir(model: str) -> Path | None:
    """``model`` as an existing local folder, or None (a hub id)."""
    p = Path(model.removeprefix("local-dir:")).expanduser()
    return p.resolve() if p.is_dir() else None


def resolve(model: str, what: str, how_to_fix: str, *, fallback: Callable[[], Path | None] | None = None) -> str:
    """Where the transformers model ``model`` loads from, checked without importing torch: a local folder with a
    ``config.json``, or a hub id whose weights can be had (cached, or the hub reachable), else ``fallback()``'s
    folder when it gives one. Raises ModelUnavailable naming ``what`` and saying ``how_to_fix``."""
    if (d := local_dir(model)) is not None:
        if not (d / "config.json").is_file():
            raise ModelUnavailable(f"{what} {model}: the folder has no config.json; {how_to_fix}")
        return str(d)
    if looks_like_path(model):
        raise ModelUnavailable(f"{what} {model}: no such folder; {how_to_fix}")
    why = weights_missing(model, "config.json")
    if why is None:
        return model
    if fallback is not None and (d := fallback()) is not None:
        return str(d)
    raise ModelUnavailable(f"{what} {model}: {why}; {how_to_fix}")
