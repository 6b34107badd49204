"""Stages that add one named vector to the pages already stored, from the catalog and the stored file — nothing is
read from the original again, so turning an encoder on (or changing it) embeds documents ingested before without
re-reading them. Each runs after the read and the captions, for every complete document of the run whose stage is
missing or outdated — the text stage also earlier, fed each batch of pages as its captions are stored
(``Streaming``), which leaves the pass after nothing for those documents; a document is marked done only after its
vectors are durable. When the model cannot load, the stage is left pending (said once) for a later ingest; a
document whose embedding fails stays pending with the reason and the others go on. ``ingest/text_stage.py`` (the
words) and ``ingest/patch_stage.py`` (the page images, for the late-interaction rerank) are the two.

Where the vectors are made: here, by the process's own model (``Models``), or — ``ingest --ray`` — by an actor pool
on the Ray cluster (``ingest/ray_vectors.py``: one actor per GPU, ``num_gpus=1`` each), fed the same per-page
inputs (``inputs``) and running the same ``encode``; the driver then only writes what comes back."""

from __future__ import annotations

import dataclasses
import functools
import logging
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import numpy as np

from schemas.documents import Document
from schemas.errors import PageLensError
from schemas.results import FileOutcome
from schemas.settings import Settings
from store.catalog import PageRecord
from store.library import Library, page_point
from store.vectors import PagePoint, VectorSpec
from vlm.runtime import ModelName, Models

if TYPE_CHECKING:
    from ingest.ray_vectors import RayEncoders

log = logging.getLogger(__name__)

M = TypeVar("M")


class About(NamedTuple):
    """What a loaded model makes: its ``version`` (model and settings), vector ``dim`` and where it runs."""

    version: str
    dim: int
    where: str

    @classmethod
    def of(cls, model: Any) -> About:
        return cls(model.version, int(model.dim), str(model.device))


Todo = list[tuple[Path, FileOutcome, Document]]


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
    def version(self, model_version: str, doc: Document) -> str:
        """What a document's vectors were made with (the model's own version, and what else went in): a change
        re-embeds it."""

    @abstractmethod
    def describe(self, where: str, pages: int, docs: int) -> str:
        """The notice when the stage starts (``where``: the model's device, or the cluster)."""

    @abstractmethod
    def unavailable(self, why: str | None) -> str:
        """The notice when the model cannot load."""

    def spec(self) -> VectorSpec:
        return VectorSpec()

    @abstractmethod
    def inputs(self, doc: Document, batch: Sequence[PageRecord]) -> list[Any]:
        """What the model reads of each page of ``batch`` (picklable: it may travel to a Ray actor)."""

    @staticmethod
    @abstractmethod
    def encode(model: Any, inputs: Sequence[Any]) -> list[np.ndarray]:
        """One (rows, dim) array per input (no rows: the page gets no vector). Raises PageLensError."""

    def _model(self) -> Any:
        """This process's model of the stage, or None (``models.why_not`` says why)."""
        return self.models.maybe(getattr(self.models, self.MODEL))

    @classmethod
    def load(cls, settings: Settings) -> Any:
        """The stage's model, loaded through the one owner (on a Ray actor: its own). Raises ModelUnavailable."""
        return getattr(Models(settings), cls.MODEL)()

    def run(self, outcomes: dict[Path, FileOutcome], report: Callable[..., None],
            cluster: RayEncoders | None = None) -> None:
        """Embed the run's complete documents whose stage is missing or outdated — here, or with ``cluster`` on
        the Ray cluster's actors."""
        if not self.enabled():
            return
        docs = [(path, o, d) for path, o in outcomes.items()
                if o.doc_id and o.status != "failed" and (d := self.catalog.get_document(o.doc_id)) is not None
                and d.status == "complete"]
        if not docs:
            return
        model: M | None = None
        if cluster is None:
            model = self._model()
            about, why = (About.of(model), None) if model is not None else (None, self.models.why_not(self.MODEL))
        else:  # asked of the cluster, where the model will run (the driver loads nothing)
            about, why = cluster.describe(type(self), self.s)
        todo = [(p, o, d) for p, o, d in docs
                if about is None or d.stages.get(self.STAGE) != self.version(about.version, d)]
        if not todo:
            return
        if about is None:
            report(todo[0][0].name, notice=self.unavailable(why))
            for path, o, doc in todo:
                if self.STAGE not in doc.pending:
                    self.catalog.complete_document(doc.doc_id, stages=doc.stages, pending=[*doc.pending, self.STAGE])
                outcomes[path] = o.model_copy(update={"pending": sorted({*o.pending, self.STAGE})})
            return
        self._ensure_vector(about, {d.doc_id for _, _, d in todo})
        pages = sum(d.page_count for _, _, d in todo)
        report(todo[0][0].name, notice=self.describe(about.where, pages, len(todo)))
        done = 0

        def progress(n: int, name: str) -> None:
            nonlocal done
            done += n
            report(name, stage=(self.LABEL, done, pages))

        if cluster is not None:
            self._embed_on(cluster, about, todo, outcomes, progress)
            return
        for path, o, doc in todo:
            try:
                self._embed(model, about, doc, functools.partial(progress, name=path.name))
            except PageLensError as e:  # this document stays pending, with the reason; the others go on
                self._failed(outcomes, path, o, e.message)
                continue
            self._succeeded(outcomes, path, o)

    def streaming(self, run_docs: set[str], notice: Callable[[str], None], pages: Callable[[], int]) -> Streaming:
        """For embedding pages as they come in (the captions' window: each batch as its captions are stored) rather
        than after; ``run_docs``: the documents of the run (not emptied if the vector is created), ``notice``
        says where the model runs, once, when it first loads; ``pages()``: the run's pages so far, for it."""
        return Streaming(self, run_docs, notice, pages)

    def _ensure_vector(self, about: About, embedding_now: set[str]) -> None:
        """The named vector, of ``about``'s size, in the index; created or recreated, it is empty: ``_emptied``."""
        if self.index.ensure_dense(self.VECTOR, about.dim, self.spec()):
            self._emptied(embedding_now)

    def _emptied(self, embedding_now: set[str]) -> None:
        """The named vector was (re)created — another model size, or another storage — so every document's
        vectors of it are gone: the documents this run does not embed lose the stage and have it pending (said by
        ``docs``; their next ingest embeds them from the stored file), instead of claiming vectors they lack."""
        stale = [d for d in self.catalog.list_documents()
                 if d.status == "complete" and self.STAGE in d.stages and d.doc_id not in embedding_now]
        for d in stale:
            self.catalog.complete_document(d.doc_id, stages={k: v for k, v in d.stages.items() if k != self.STAGE},
                                           pending=sorted({*d.pending, self.STAGE}))
        if stale:
            log.warning("the %s vectors were recreated (%s): %d other documents have the %s stage pending again; "
                        "ingest them again to embed them (nothing is read again)", self.VECTOR, self.LABEL,
                        len(stale), self.STAGE)

    def _failed(self, outcomes: dict[Path, FileOutcome], path: Path, o: FileOutcome, why: str) -> None:
        log.warning("%s: stage %s failed, left pending: %s", path.name, self.STAGE, why)
        outcomes[path] = o.model_copy(update={"pending": sorted({*o.pending, self.STAGE}),
                                              "warnings": [*o.warnings, f"{self.LABEL} failed: {why}"]})

    def _succeeded(self, outcomes: dict[Path, FileOutcome], path: Path, o: FileOutcome) -> None:
        pending = [p for p in o.pending if p != self.STAGE]
        outcomes[path] = o.model_copy(update={"pending": pending,
                                              "status": "ingested" if o.status == "unchanged" else o.status})

    def _batches(self, doc: Document) -> Iterator[list[PageRecord]]:
        batch: list[PageRecord] = []
        for rec in self.catalog.iter_pages(doc.doc_id):
            batch.append(rec)
            if len(batch) >= self.s.ingest.batch_pages:
                yield batch
                batch = []
        if batch:
            yield batch

    def _embed(self, model: Any, about: About, doc: Document, progress: Callable[[int], None]) -> None:
        for batch in self._batches(doc):
            self._embed_batch(model, doc, batch)
            progress(len(batch))
        self._complete(about, doc)

    def _embed_batch(self, model: Any, doc: Document, batch: Sequence[PageRecord]) -> None:
        """One batch of ``doc``'s pages embedded by ``model`` and written. Raises PageLensError."""
        self._write(doc, self._points(doc, batch), self.encode(model, self.inputs(doc, batch)))

    def _complete(self, about: About, doc: Document) -> None:
        self.index.flush()  # vectors durable before the stage is recorded
        fresh = self.catalog.get_document(doc.doc_id) or doc
        self.catalog.complete_document(doc.doc_id,
                                       stages={**fresh.stages, self.STAGE: self.version(about.version, fresh)},
                                       pending=[p for p in fresh.pending if p != self.STAGE])

    @staticmethod
    def _points(doc: Document, batch: Sequence[PageRecord]) -> list[PagePoint]:
        return [page_point(r, doc.collection, caption=r.page.caption, dense={}) for r in batch]

    def _write(self, doc: Document, points: Sequence[PagePoint], vectors: Sequence[np.ndarray]) -> None:
        self.index.update_vectors([dataclasses.replace(p, dense={self.VECTOR: v.tolist()})
                                   for p, v in zip(points, vectors, strict=True) if len(v)])

    def _embed_on(self, cluster: RayEncoders, about: About, todo: Todo, outcomes: dict[Path, FileOutcome],
                  progress: Callable[[int, str], None]) -> None:
        """Every batch of every document of ``todo`` to the cluster's actors at once (Ray Data streams them); each
        batch written as it comes back, each document's stage recorded when its last batch is."""
        items: list[tuple[int, bytes]] = []
        work: dict[int, tuple[int, list[PagePoint]]] = {}  # item → (its document in todo, its points)
        left = [0] * len(todo)
        failed: set[int] = set()
        for k, (path, o, doc) in enumerate(todo):
            try:
                batches = [(self._points(doc, b), pickle.dumps(self.inputs(doc, b))) for b in self._batches(doc)]
            except PageLensError as e:  # e.g. its stored file is gone: it stays pending, the others go on
                failed.add(k)
                self._failed(outcomes, path, o, e.message)
                continue
            for points, inputs in batches:
                work[len(items)] = (k, points)
                items.append((len(items), inputs))
            left[k] = len(batches)
        for k, (path, o, doc) in enumerate(todo):
            if left[k] == 0 and k not in failed:  # no pages
                self._complete(about, doc)
                self._succeeded(outcomes, path, o)
        for key, vectors, why in cluster.embed(type(self), self.s, items):
            k, points = work.pop(key)
            path, o, doc = todo[k]
            if k in failed:
                continue
            if vectors is None:  # this document stays pending, with the reason; the others go on
                failed.add(k)
                self._failed(outcomes, path, o, why or "lost on the Ray cluster")
                continue
            self._write(doc, points, vectors)
            progress(len(points), path.name)
            left[k] -= 1
            if left[k] == 0:
                self._complete(about, doc)
                self._succeeded(outcomes, path, o)


class Streaming:
    """One stage's model fed pages as they come (``pages``), a document's stage recorded (``finish``) when every one
    of its pages was embedded. Loads the model on the first pages; a model that cannot load, or a batch
    that fails, leaves the documents to the stage's pass after the window (which says why). Used from one
    thread."""

    def __init__(self, stage: VectorStage[Any], run_docs: set[str], notice: Callable[[str], None],
                 total: Callable[[], int]) -> None:
        self.stage = stage
        self.run_docs = run_docs
        self.notice = notice
        self.total = total
        self.model: Any = None
        self.about: About | None = None
        self.off = not stage.enabled()
        self.embedded: dict[str, int] = {}
        self.broken: set[str] = set()
        self.docs: dict[str, Document] = {}

    def _ready(self) -> bool:
        if self.off or self.about is not None:
            return not self.off
        st = self.stage
        self.model = st._model()
        if self.model is None:  # the pass after the window says why
            self.off = True
            return False
        self.about = About.of(self.model)
        st._ensure_vector(self.about, self.run_docs)
        self.notice(st.describe(self.about.where, self.total(), len(self.run_docs)) + ", as their captions come in")
        return True

    def pages(self, doc_id: str, records: list[PageRecord]) -> None:
        if doc_id in self.broken or not self._ready():
            return
        doc = self.docs.get(doc_id) or self.stage.catalog.get_document(doc_id)  # its collection, for the points
        if doc is None:
            return
        self.docs[doc_id] = doc
        try:
            self.stage._embed_batch(self.model, doc, records)
        except PageLensError as e:  # the pass after the window embeds it again (and says why if it fails again)
            log.info("%s: embedding as captions came in failed (%s); left to the pass after", doc_id[:12], e.message)
            self.broken.add(doc_id)
            return
        self.embedded[doc_id] = self.embedded.get(doc_id, 0) + len(records)

    def finish(self, doc_id: str) -> None:
        if self.about is None or doc_id in self.broken:
            return
        doc = self.stage.catalog.get_document(doc_id)
        if doc is not None and doc.status == "complete" and self.embedded.get(doc_id, 0) == doc.page_count:
            self.stage._complete(self.about, doc)
