"""Writing read pages into the stores — the one place, used by the pipeline on the driver and, with shared stores on
a Ray cluster ("many writers"), by the workers themselves.

Order, as everywhere (``store.library``): the pages' points first, then their catalog rows (one transaction, insert
or replace: a retried write is harmless). The document's own row is begun before any page is written and marked
complete after all of them, both by the driver, so a run killed anywhere leaves a ``partial`` document that the next
run removes and redoes.

Workers may write only when both stores are shared servers — a Qdrant server and a PostgreSQL catalog
(``SharedStores.of``); with the embedded stores (Qdrant Edge, SQLite: one process each) every write goes through
the driver."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.documents import Page
from store.catalog import Catalog, PageRecord
from store.library import page_point
from store.vectors import SparseVec, VectorIndex

if TYPE_CHECKING:
    from ingest.reader import PageOut
    from schemas.settings import Settings


@dataclass
class Written:
    """What a batch of written pages tells the driver (the pages themselves stay where they were written)."""

    pages: int = 0
    embedded: int = 0  # pages written with an image vector
    warnings: list[str] = field(default_factory=list)
    words_failed: list[str] = field(default_factory=list)  # pages whose words could not be read: the file re-reads

    def add(self, other: Written) -> None:
        self.pages += other.pages
        self.embedded += other.embedded
        self.warnings += other.warnings
        self.words_failed += other.words_failed


def page_records(doc_id: str, batch: Sequence[PageOut]) -> list[PageRecord]:
    """Catalog rows of freshly read pages (the readers sent the words encoded: nothing to decode)."""
    return [PageRecord(Page(doc_id=doc_id, page_no=p.page_no, width_pt=p.width_pt, height_pt=p.height_pt,
                            rotation=p.rotation, words_source=p.words_source, word_count=p.word_count,
                            headings=p.headings), p.blob) for p in batch]


def write_pages(index: VectorIndex, catalog: Catalog, records: Sequence[PageRecord], collection: str,
                dense: dict[int, dict[str, list[float]]], sparse: dict[int, SparseVec], rows: bool,
                replace: bool = True) -> None:
    """Write the pages' points (``dense`` by page number, the readers' BM25 ``sparse`` where given), then —
    ``rows`` — their catalog rows. ``replace``: the points are upserted whole (freshly read pages); otherwise only
    the vectors given are replaced and the others a point has stay (pages rendered again for a new encoder keep
    their words' vectors)."""
    points = [page_point(r, collection, caption=r.page.caption, dense=dict(dense.get(r.page.page_no, {})),
                         sparse=sparse.get(r.page.page_no)) for r in records]
    if replace:
        index.upsert(points)
    else:
        index.update_vectors(points)
    if rows:
        catalog.put_pages(records)


def written(batch: Sequence[PageOut], dense: dict[int, dict[str, list[float]]]) -> Written:
    return Written(pages=len(batch), embedded=sum("image" in dense.get(p.page_no, {}) for p in batch),
                   warnings=[w for p in batch for w in p.warnings],
                   words_failed=[p.words_failed for p in batch if p.words_failed])


@dataclass(frozen=True)
class SharedStores:
    """Where workers write: a PostgreSQL catalog and a Qdrant server (``of`` says whether the settings name both),
    and the run's collection."""

    catalog_url: str
    qdrant_url: str
    qdrant_api_key: str | None
    collection: str

    @staticmethod
    def of(settings: Settings, collection: str) -> SharedStores | None:
        url = settings.qdrant_url
        if not url or url == ":memory:" or settings.catalog_url.startswith("sqlite"):
            return None
        return SharedStores(settings.catalog_url, url, settings.qdrant_api_key, collection)

    def write(self, doc_id: str, batch: Sequence[PageOut]) -> Written:
        """In a worker: write freshly read pages (``mode="full"``, with their image vectors if embedded). When the
        driver has begun removing the document meanwhile (its file failed), the rows are not written and the
        points just written are taken back — whichever of the two gets its row first, nothing is left of it."""
        catalog, index = _open(self)
        dense = {p.page_no: {"image": p.image_vector} if p.image_vector is not None else {} for p in batch}
        records = page_records(doc_id, batch)
        write_pages(index, catalog, records, self.collection, dense,
                    {p.page_no: p.sparse for p in batch if p.sparse is not None}, rows=False)
        if not catalog.put_pages_if_partial(records):
            index.delete_document(doc_id)
            return Written()
        return written(batch, dense)


_OPEN: dict[tuple[str, str], tuple[Catalog, VectorIndex]] = {}  # per worker process: connections kept across tasks


def _open(stores: SharedStores) -> tuple[Catalog, VectorIndex]:
    key = (stores.catalog_url, stores.qdrant_url)
    if key not in _OPEN:
        from store.qdrant_server import ServerIndex

        _OPEN[key] = (Catalog(stores.catalog_url, pooled=False),
                      ServerIndex(stores.qdrant_url, api_key=stores.qdrant_api_key))
    return _OPEN[key]
