"""Identity: one place for how documents and pages are named.

A document is its bytes *in a collection* (collections are the unit of tenancy: the same file uploaded into two
collections is two documents, and neither upload changes the other). Its ``doc_id`` is the sha256 (hex) of the
file's bytes in the default collection, and the sha256 of ``"{collection}\n{content}"`` in any other (or when
an older store already gave the bare hash to the same bytes in another collection); ``doc_candidates`` lists
where a document may already be. A page's vector point id is uuid5 of ``"{doc_id}:{page_no}"`` with 1-based
``page_no``. Re-ingesting the same bytes into the same collection therefore hits the same ids.
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


def collection_doc_id(content: str, collection: str) -> str:
    """The id of the bytes hashed ``content`` in ``collection`` when the bare hash is not theirs."""
    return hashlib.sha256(f"{collection}\n{content}".encode()).hexdigest()


def doc_candidates(content: str, collection: str, default_collection: str) -> list[str]:
    """The ids the bytes hashed ``content`` may have in ``collection``, the preferred one first: the bare hash in
    the default collection (and, from stores made before tenancy, in any collection), else the derived id."""
    derived = collection_doc_id(content, collection)
    return [content, derived] if collection == default_collection else [derived, content]


def point_id(doc_id: str, page_no: int) -> str:
    """Vector point id of a page (``page_no`` is 1-based)."""
    if page_no < 1:
        raise ValueError(f"page_no is 1-based, got {page_no}")
    return str(uuid.uuid5(PAGE_NAMESPACE, f"{doc_id}:{page_no}"))
