"""The Hugging Face hub, as the model loaders see it: can it be reached at all?"""

from __future__ import annotations

import logging

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
