"""Planning a file's ingest from its content hash and the stages recorded for it: read it all (new, changed
reader, changed index), only render it again (a new encoder), or nothing (unchanged). The same bytes in another
collection are another document (``schemas.ids``). The stage versions are decided here and nowhere else."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest import pdf
from ingest.ocr import ocr_version
from schemas.documents import Document
from schemas.errors import TooLarge
from schemas.ids import collection_doc_id, doc_candidates, doc_id_of_file
from schemas.results import FileOutcome
from schemas.settings import Settings
from store import bm25
from store.library import Library

log = logging.getLogger(__name__)


def words_version(s: Settings) -> str:
    """What produced a document's words: PyMuPDF, the OCR settings, the outline switch (the OCR engine is the
    ``ocr_words`` stage's: switching it re-reads only documents with OCR'd pages)."""
    i = s.ingest
    headings = "" if i.outline_headings else ",no-outline"
    return f"{pdf.library_version()}@{i.ocr_dpi:g}dpi,min{i.ocr_min_words}{headings}"


def _same_words(stored: str | None, s: Settings) -> bool:
    """The stored ``words`` stage is this one. Before the OCR engine moved to the ``ocr_words`` stage it was part of
    this version (``pymupdf-X+rapidocr-onnxruntime-Y@…``): a document read then is not read again for it (one with
    OCR'd pages is, by its ``ocr_words`` stage)."""
    return stored is not None and re.sub(r"\+rapidocr[^@]*", "", stored) == words_version(s)


def embed_version(s: Settings) -> str:
    """What produced a document's image vectors: the encoder and the rendering resolution."""
    return f"open_clip:{s.encoder.model}@{s.ingest.render_dpi:g}dpi"


@dataclass
class Plan:
    """One file of a run, from its plan to its outcome."""

    path: Path
    name: str  # the file as the user knows it (the catalog's name, the report's path)
    doc_id: str
    kind: Literal["pdf", "image"]
    mode: Literal["full", "render"]
    previously_complete: bool
    started: float = field(default_factory=time.perf_counter)
    pages: int = 0
    page_count: int = 0
    embedded: bool = True  # every page got an image vector
    parts_left: int = 1  # page ranges still being read (a long file is read by several readers at once)
    failed: bool = False  # recorded as failed: later events of its other parts are dropped
    warnings: list[str] = field(default_factory=list)  # the reader's, logged
    words_failed: list[str] = field(default_factory=list)  # pages whose words could not be read (OCR failed)
    notes: list[str] = field(default_factory=list)  # for the user's report (e.g. the file moved collection)


def plan_file(s: Settings, library: Library, path: Path, name: str, collection: str) -> Plan | FileOutcome:
    """The plan for ``path``, or its outcome when nothing needs reading. Raises PageLensError (too large,
    unsupported type) or OSError (unreadable)."""
    size = path.stat().st_size
    limit = s.ingest.max_file_mb * 1024 * 1024
    if size > limit:
        raise TooLarge(f"{path.name} is {size / 2**20:.0f} MB, over the {s.ingest.max_file_mb:g} MB "
                       "limit; split it or raise PAGELENS_INGEST__MAX_FILE_MB")
    kind = pdf.sniff_kind(path)
    doc_id, doc = identity(library, doc_id_of_file(path), collection, s.default_collection)
    if doc is None or doc.status != "complete" or not _same_words(doc.stages.get("words"), s) \
            or doc.stages.get("index") != bm25.VERSION \
            or (doc.words_sources.get("ocr") and doc.stages.get("ocr_words") != ocr_version(s.ingest.ocr_engine)):
        return Plan(path, name, doc_id, kind, "full", previously_complete=False)
    if library.index.count(doc_id) < doc.page_count:
        # the catalog says complete but this vector store lacks its points (a catalog shared by two embedded
        # stores, or a store restored from another time): read it again rather than report "unchanged"
        log.warning("%s: the vector store lacks %s's pages; reading it again", path.name, doc_id[:12])
        return Plan(path, name, doc_id, kind, "full", previously_complete=False)
    library.catalog.add_name(doc_id, name)
    if doc.stages.get("embed") != embed_version(s):
        return Plan(path, name, doc_id, kind, "render", previously_complete=True)
    return FileOutcome(path=name, doc_id=doc_id, status="unchanged", pages=doc.page_count, pending=doc.pending)


def identity(library: Library, content: str, collection: str, default_collection: str) -> tuple[str, Document | None]:
    """The id of the bytes hashed ``content`` in ``collection``, and its catalog row when it has one. The same
    bytes in another collection are another document: never found here, never changed."""
    candidates = doc_candidates(content, collection, default_collection)
    rows = {c: library.catalog.get_document(c) for c in candidates}
    for c in candidates:
        row = rows[c]
        if row is not None and row.collection == collection:
            return c, row
    free = [c for c in candidates if rows[c] is None]
    return (free[0] if free else collection_doc_id(content, collection)), None
