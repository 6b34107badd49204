"""The composition root: builds every part from one Settings, once, and hands them to the shells
(CLI, API, UI). Heavy parts (the encoder, the VLM) load on first use."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

from ingest.discover import discover
from ingest.pipeline import Ingestor, ProgressFn
from retrieval.search import Searcher
from schemas.documents import Document
from schemas.results import Hit, IngestReport
from schemas.settings import Settings
from store.catalog import Catalog
from store.files import FileStore
from store.vectors import VectorIndex, open_vector_index
from vlm.siglip import SiglipEncoder, load_encoder

log = logging.getLogger(__name__)


class Service:
    """Everything PageLens does, for the shells. One per process (the embedded stores are single-process)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._encoder: SiglipEncoder | None = None

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.settings.catalog_url)

    @cached_property
    def files(self) -> FileStore:
        return FileStore(self.settings.files_dir)

    @cached_property
    def index(self) -> VectorIndex:
        return open_vector_index(self.settings)

    def encoder(self) -> SiglipEncoder:
        """The SigLIP encoder, loaded once. Raises ModelUnavailable."""
        if self._encoder is None:
            self._encoder = load_encoder(self.settings.encoder)
        return self._encoder

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.settings, self.catalog, self.files, self.index, self.encoder)

    @cached_property
    def searcher(self) -> Searcher:
        return Searcher(self.catalog, self.index, self.encoder if self.settings.encoder.enabled else None)

    # -- operations -------------------------------------------------------------------------------
    def ingest(self, paths: list[Path], *, collection: str | None = None, password: str | None = None,
               on_progress: ProgressFn | None = None, workers: int = 1) -> IngestReport:
        return self.ingestor.ingest(discover(paths), collection=collection, password=password,
                                    on_progress=on_progress, workers=workers)

    def search(self, question: str, *, k: int = 5, collection: str | None = None,
               doc_ids: list[str] | None = None) -> list[Hit]:
        return self.searcher.search(question, k=k, collection=collection, doc_ids=doc_ids)

    def list_documents(self, collection: str | None = None) -> list[Document]:
        return self.catalog.list_documents(collection)

    def get_document(self, ref: str) -> Document:
        return self.catalog.find_document(ref)

    def delete_document(self, ref: str) -> Document:
        doc = self.catalog.find_document(ref)
        self.ingestor.remove(doc.doc_id)
        return doc

    def close(self) -> None:
        if "index" in self.__dict__:
            self.index.close()
        if "catalog" in self.__dict__:
            self.catalog.close()
