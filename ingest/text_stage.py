"""The ``text`` stage: the text encoder's vectors of each page's words and caption (``words``, one row per chunk),
written into the pages' points from the catalog — nothing is read from the file again, so turning the encoder on
(or changing it) embeds documents ingested before without re-reading them. Runs after the read and the captions,
for every document of the run whose stage is missing or outdated; a document is marked done only after its vectors
are durable."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from schemas.documents import Document
from schemas.errors import PageLensError
from schemas.results import FileOutcome
from schemas.settings import Settings
from store.catalog import PageRecord
from store.library import Library, page_point
from vlm.runtime import Models
from vlm.text_encoder import TextEncoder

log = logging.getLogger(__name__)

STAGE = "text"


def page_text(rec: PageRecord) -> str:
    """What the text encoder reads of a page: its words in reading order, then its caption."""
    words = " ".join(rec.table.texts)
    return f"{words}\n{rec.page.caption}" if rec.page.caption else words


def stage_version(encoder: TextEncoder, doc: Document) -> str:
    """The encoder and its chunking, and the caption stage the text included (a new caption re-embeds)."""
    return f"{encoder.version}|caption={doc.stages.get('caption', '')}"


class TextEmbedder:
    def __init__(self, settings: Settings, library: Library, models: Models) -> None:
        self.s = settings
        self.catalog = library.catalog
        self.index = library.index
        self.models = models

    def run(self, outcomes: dict[Path, FileOutcome], report: Callable[..., None]) -> None:
        """Embed the run's complete documents whose text stage is missing or outdated. With the encoder disabled
        nothing happens; when it cannot load, the stage is left pending (said once) for a later ingest."""
        if not self.s.text_encoder.enabled:
            return
        docs = [(path, o, d) for path, o in outcomes.items()
                if o.doc_id and o.status != "failed" and (d := self.catalog.get_document(o.doc_id)) is not None
                and d.status == "complete"]
        if not docs:
            return
        encoder = self.models.maybe(self.models.text_encoder)
        todo = [(p, o, d) for p, o, d in docs if encoder is None or d.stages.get(STAGE) != stage_version(encoder, d)]
        if not todo:
            return
        if encoder is None:
            report(todo[0][0].name, notice=f"Page words are not embedded: {self.models.why_not('text_encoder')}")
            for path, o, doc in todo:
                if STAGE not in doc.pending:
                    self.catalog.complete_document(doc.doc_id, stages=doc.stages, pending=[*doc.pending, STAGE])
                outcomes[path] = o.model_copy(update={"pending": sorted({*o.pending, STAGE})})
            return
        self.index.ensure_dense("words", encoder.dim)
        pages = sum(d.page_count for _, _, d in todo)
        report(todo[0][0].name, notice=f"embedding the words of {pages} pages of {len(todo)} documents "
                                       f"({self.s.text_encoder.model})")
        done = 0

        def progress(n: int, name: str) -> None:
            nonlocal done
            done += n
            report(name, stage=("embedding words", done, pages))

        for path, o, doc in todo:
            try:
                self._embed(encoder, doc, functools.partial(progress, name=path.name))
            except PageLensError as e:  # this document stays pending, with the reason; the others go on
                log.warning("%s: its words were not embedded, left pending: %s", path.name, e.message)
                outcomes[path] = o.model_copy(update={"pending": sorted({*o.pending, STAGE}),
                                                      "warnings": [*o.warnings, f"text embedding failed: {e.message}"]})
                continue
            pending = [p for p in o.pending if p != STAGE]
            outcomes[path] = o.model_copy(update={"pending": pending,
                                                  "status": "ingested" if o.status == "unchanged" else o.status})

    def _embed(self, encoder: TextEncoder, doc: Document, progress: Callable[[int], None]) -> None:
        batch: list[PageRecord] = []
        for rec in self.catalog.iter_pages(doc.doc_id):
            batch.append(rec)
            if len(batch) >= self.s.ingest.batch_pages:
                self._write(encoder, doc, batch)
                progress(len(batch))
                batch = []
        self._write(encoder, doc, batch)
        progress(len(batch))
        self.index.flush()  # vectors durable before the stage is recorded
        fresh = self.catalog.get_document(doc.doc_id) or doc
        self.catalog.complete_document(doc.doc_id, stages={**fresh.stages, STAGE: stage_version(encoder, fresh)},
                                       pending=[p for p in fresh.pending if p != STAGE])

    def _write(self, encoder: TextEncoder, doc: Document, batch: list[PageRecord]) -> None:
        if not batch:
            return
        vectors = encoder.encode_pages([page_text(r) for r in batch])
        points = [page_point(r, doc.collection, caption=r.page.caption, dense={"words": v.tolist()})
                  for r, v in zip(batch, vectors, strict=True) if len(v)]
        self.index.update_vectors(points)
