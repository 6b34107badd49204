"""Stages that add one named vector to the pages already stored, from the catalog and the stored file — nothing is
read from the original again, so turning an encoder on (or changing it) embeds documents ingested before without
re-reading them. Each runs after the read and the captions, for every complete document of the run whose stage is
missing or outdated; a document is marked done only after its vectors are durable. When the model cannot load, the
stage is left pending (said once) for a later ingest; a document whose embedding fails stays pending with the reason
and the others go on. ``ingest/text_stage.py`` (the words) and ``ingest/patch_stage.py`` (the page images, for the
late-interaction rerank) are the two."""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from schemas.documents import Document
from schemas.errors import PageLensError
from schemas.results import FileOutcome
from schemas.settings import Settings
from store.catalog import PageRecord
from store.library import Library, page_point
from store.vectors import VectorSpec
from vlm.runtime import ModelName, Models

log = logging.getLogger(__name__)

M = TypeVar("M")


class VectorStage(ABC, Generic[M]):
    """One stage: ``STAGE`` (its name among a document's stages), ``VECTOR`` (the named vector it writes),
    ``MODEL`` (which of ``Models`` makes it), ``LABEL`` (its progress line)."""

    STAGE: str
    VECTOR: str
    MODEL: ModelName
    LABEL: str

    def __init__(self, settings: Settings, library: Library, models: Models) -> None:
        self.s = settings
        self.library = library
        self.catalog = library.catalog
        self.index = library.index
        self.models = models

    @abstractmethod
    def enabled(self) -> bool: ...

    @abstractmethod
    def version(self, model: M, doc: Document) -> str:
        """What a document's vectors were made with: a change re-embeds it."""

    @abstractmethod
    def describe(self, model: M, pages: int, docs: int) -> str:
        """The notice when the stage starts."""

    @abstractmethod
    def unavailable(self, why: str | None) -> str:
        """The notice when the model cannot load."""

    @abstractmethod
    def dim(self, model: M) -> int: ...

    def spec(self) -> VectorSpec:
        return VectorSpec()

    @abstractmethod
    def vectors(self, model: M, doc: Document, batch: Sequence[PageRecord]) -> list[np.ndarray]:
        """One (rows, dim) array per page of ``batch`` (no rows: the page gets no vector). Raises PageLensError."""

    def run(self, outcomes: dict[Path, FileOutcome], report: Callable[..., None]) -> None:
        """Embed the run's complete documents whose stage is missing or outdated."""
        if not self.enabled():
            return
        docs = [(path, o, d) for path, o in outcomes.items()
                if o.doc_id and o.status != "failed" and (d := self.catalog.get_document(o.doc_id)) is not None
                and d.status == "complete"]
        if not docs:
            return
        model: M | None = self.models.maybe(getattr(self.models, self.MODEL))
        todo = [(p, o, d) for p, o, d in docs if model is None or d.stages.get(self.STAGE) != self.version(model, d)]
        if not todo:
            return
        if model is None:
            report(todo[0][0].name, notice=self.unavailable(self.models.why_not(self.MODEL)))
            for path, o, doc in todo:
                if self.STAGE not in doc.pending:
                    self.catalog.complete_document(doc.doc_id, stages=doc.stages, pending=[*doc.pending, self.STAGE])
                outcomes[path] = o.model_copy(update={"pending": sorted({*o.pending, self.STAGE})})
            return
        self.index.ensure_dense(self.VECTOR, self.dim(model), self.spec())
        pages = sum(d.page_count for _, _, d in todo)
        report(todo[0][0].name, notice=self.describe(model, pages, len(todo)))
        done = 0

        def progress(n: int, name: str) -> None:
            nonlocal done
            done += n
            report(name, stage=(self.LABEL, done, pages))

        for path, o, doc in todo:
            try:
                self._embed(model, doc, functools.partial(progress, name=path.name))
            except PageLensError as e:  # this document stays pending, with the reason; the others go on
                log.warning("%s: stage %s failed, left pending: %s", path.name, self.STAGE, e.message)
                outcomes[path] = o.model_copy(update={
                    "pending": sorted({*o.pending, self.STAGE}),
                    "warnings": [*o.warnings, f"{self.LABEL} failed: {e.message}"]})
                continue
            pending = [p for p in o.pending if p != self.STAGE]
            outcomes[path] = o.model_copy(update={"pending": pending,
                                                  "status": "ingested" if o.status == "unchanged" else o.status})

    def _embed(self, model: M, doc: Document, progress: Callable[[int], None]) -> None:
        batch: list[PageRecord] = []
        for rec in self.catalog.iter_pages(doc.doc_id):
            batch.append(rec)
            if len(batch) >= self.s.ingest.batch_pages:
                self._write(model, doc, batch)
                progress(len(batch))
                batch = []
        self._write(model, doc, batch)
        progress(len(batch))
        self.index.flush()  # vectors durable before the stage is recorded
        fresh = self.catalog.get_document(doc.doc_id) or doc
        self.catalog.complete_document(doc.doc_id, stages={**fresh.stages, self.STAGE: self.version(model, fresh)},
                                       pending=[p for p in fresh.pending if p != self.STAGE])

    def _write(self, model: M, doc: Document, batch: list[PageRecord]) -> None:
        if not batch:
            return
        vectors = self.vectors(model, doc, batch)
        points = [page_point(r, doc.collection, caption=r.page.caption, dense={self.VECTOR: v.tolist()})
                  for r, v in zip(batch, vectors, strict=True) if len(v)]
        self.index.update_vectors(points)
