"""The library as stored: the catalog, the file store and the vector index, which every write touches together and in
one order — vectors first, then rows, then files when removing — so that a killed process leaves only what
``reconcile`` can clean. Also the one place a page's index point is built."""

from __future__ import annotations

import logging

from schemas.ids import point_id
from store import bm25
from store.catalog import Catalog, PageRecord
from store.files import FileStore
from store.vectors import PagePoint, SparseVec, VectorIndex

log = logging.getLogger(__name__)


def page_point(rec: PageRecord, collection: str, *, caption: str | None,
               dense: dict[str, list[float] | list[list[float]]],
               sparse: SparseVec | None = None) -> PagePoint:
    """A page's point: its BM25 vector over its words, ``caption`` and headings (``sparse`` when a reader already
    computed it from the same words and headings and there is no caption: the words are then not even decoded)
    and its dense vectors."""
    text = sparse if sparse is not None and not caption else bm25.page_vector(rec.table.texts, caption,
                                                                               rec.page.headings)
    return PagePoint(id=point_id(rec.page.doc_id, rec.page.page_no), doc_id=rec.page.doc_id, page=rec.page.page_no,
                     collection=collection, text=text, dense=dense)


class Library:
    """Catalog + files + index, for the writes that must touch all three in order."""

    def __init__(self, catalog: Catalog, files: FileStore, index: VectorIndex) -> None:
        self.catalog = catalog
        self.files = files
        self.index = index

    def remove(self, doc_id: str) -> None:
        """Delete a document everywhere: marked ``removing`` (so writers beside this process stop adding to it;
        a killed run's next run finishes the removal), then its vectors, its rows, the stored file."""
        self.catalog.mark_removing(doc_id)
        self.index.delete_document(doc_id)
        self.index.flush()
        self.catalog.delete_document(doc_id)
        self.files.delete(doc_id)

    def move(self, doc_id: str, collection: str) -> None:
        """Put a document in another collection: its points, then its row."""
        self.index.set_collection(doc_id, collection)
        self.index.flush()
        self.catalog.set_collection(doc_id, collection)

    def reconcile(self, keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """Remove what a killed run left behind: documents still ``partial`` (their vectors, pages, row and
        stored file) and stored files no document row claims, except ``keep`` (about to be redone). Returns the
        doc ids removed."""
        removed = []
        for doc_id in self.catalog.partial_documents():
            if doc_id in keep:
                continue
            self.remove(doc_id)
            removed.append(doc_id)
        # stored files of batch members a killed run copied in but never started: no catalog row at all
        stored = self.files.doc_ids() - set(keep)
        for doc_id in stored - self.catalog.known_ids(sorted(stored)):
            self.files.delete(doc_id)
            removed.append(doc_id)
        self.files.drop_incoming()
        return removed
