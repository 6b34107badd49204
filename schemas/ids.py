"""Identity: one place for how documents and pages are named.

``doc_id`` is the sha256 (hex) of the file's bytes; a page's vector point id is uuid5 of
``"{doc_id}:{page_no}"`` with 1-based ``page_no``. Re-ingesting the same bytes therefore hits the same ids.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

# Fixed namespace so ids are stable across versions and machines.
PAGE_NAMESPACE = uuid.UUID("5b0f6c52-8f0e-4f7a-9d8f-2c4f1a7e9b31")
_CHUNK = 1 << 20


def doc_id_of_file(path: Path) -> str:
    """sha256 of a file, streamed (constant memory)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def point_id(doc_id: str, page_no: int) -> str:
    """Vector point id of a page (``page_no`` is 1-based)."""
    if page_no < 1:
        raise ValueError(f"page_no is 1-based, got {page_no}")
    return str(uuid.uuid5(PAGE_NAMESPACE, f"{doc_id}:{page_no}"))
