"""Who writes pages: the workers of a Ray cluster only when both stores are shared servers; otherwise the driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.write import SharedStores
from schemas.settings import Settings

PG = "postgresql+psycopg://u:p@db:5432/pagelens"


@pytest.mark.parametrize("qdrant_url,database_url,shared", [
    (None, None, False),  # Qdrant Edge + SQLite: one process each
    ("http://qdrant:6333", None, False),  # a server, but the SQLite catalog is one process's
    (None, PG, False),  # PostgreSQL, but Qdrant Edge
    (":memory:", PG, False),  # qdrant-client's in-process engine: not shared
    ("http://qdrant:6333", PG, True),
])
def test_workers_write_only_into_shared_servers(tmp_path: Path, qdrant_url: str | None, database_url: str | None,
                                                shared: bool) -> None:
    s = Settings(data_dir=tmp_path, qdrant_url=qdrant_url, database_url=database_url)
    stores = SharedStores.of(s, "papers")
    assert (stores is not None) == shared
    if stores is not None:
        assert (stores.catalog_url, stores.qdrant_url, stores.collection) == (PG, qdrant_url, "papers")


@pytest.mark.server
def test_a_worker_writing_into_a_document_being_removed_leaves_nothing(tmp_path: Path, pg_url: str) -> None:
    """A Ray worker's write that comes after the driver began removing the document (its file failed): no rows
    are written and the points it had just written are taken back; while the document is being ingested, the
    same write lands."""
    from ingest.reader import PageOut
    from schemas.wordtable import WordTable
    from store import bm25
    from store.catalog import Catalog
    from store.qdrant_server import ServerIndex
    from tests.qdrant_rest import qdrant_server

    def page(n: int) -> PageOut:
        p = PageOut(page_no=n, width_pt=612, height_pt=792, rotation=0, words_source="none", words=None)
        p.blob, p.sparse = WordTable.empty().encode(), bm25.page_vector(["total", "due"], None, [])
        return p

    with qdrant_server() as (url, _app):
        stores = SharedStores(pg_url, url, None, "default")
        catalog, index = Catalog(pg_url), ServerIndex(url)
        try:
            for doc in ("a" * 64, "b" * 64):
                catalog.begin_document(doc_id=doc, name=f"{doc[0]}.pdf", kind="pdf", collection="default",
                                       size_bytes=1, page_count=2)
            assert stores.write("a" * 64, [page(1), page(2)]).pages == 2
            catalog.mark_removing("b" * 64)  # the driver's first step of removing a failed file
            assert stores.write("b" * 64, [page(1), page(2)]).pages == 0
            assert (catalog.page_count_stored("a" * 64), index.count("a" * 64)) == (2, 2)
            assert (catalog.page_count_stored("b" * 64), index.count("b" * 64)) == (0, 0)
            assert set(catalog.partial_documents()) == {"a" * 64, "b" * 64}, "a killed removal is finished later"
        finally:
            catalog.close()
            index.close()
