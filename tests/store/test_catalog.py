"""The catalog on SQLite and, when one is reachable, on a real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.coords import BBox
from schemas.documents import Page, Word
from schemas.errors import NotFound
from schemas.results import BatchResult
from schemas.wordtable import WordTable
from store.catalog import Catalog, PageRecord


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
        yield cat
        cat.close()
        return
    cat = Catalog(request.getfixturevalue("pg_url"))  # a schema of its own for this test
    yield cat
    cat.close()


def _words(n: int) -> list[Word]:
    return [Word(text=f"wörd{i}", bbox=BBox.of([i / (n + 1), 0.1, (i + 0.5) / (n + 1), 0.2]),
                 confidence=0.5 + i / (2 * n), source="ocr" if i % 2 else "text_layer") for i in range(n)]


def test_word_blob_round_trip() -> None:
    ws = _words(50)
    table = WordTable.from_words(ws, "ocr")
    back = WordTable.decode(table.encode()).words()
    assert [w.text for w in back] == [w.text for w in ws]
    pairs = list(zip(ws, back, strict=True))
    assert all(abs(a.bbox.x0 - b.bbox.x0) < 2e-5 and abs(a.bbox.y1 - b.bbox.y1) < 2e-5 for a, b in pairs)
    assert all(abs(a.confidence - b.confidence) < 0.005 and b.source == "ocr" for a, b in zip(ws, back, strict=True))
    assert len(WordTable.decode(WordTable.empty().encode())) == 0


def test_document_lifecycle(catalog: Catalog) -> None:
    doc_id = uuid.uuid4().hex * 2
    catalog.begin_document(doc_id=doc_id, name="/in/a.pdf", kind="pdf", collection="c1", size_bytes=10, page_count=2)
    assert catalog.partial_documents() == [doc_id]
    recs = [PageRecord(Page(doc_id=doc_id, page_no=p, width_pt=612, height_pt=792, words_source="text_layer",
                            word_count=5), WordTable.from_words(_words(5), "text_layer")) for p in (1, 2)]
    catalog.put_pages(recs)
    catalog.put_pages(recs[:1])  # replace, not duplicate
    assert catalog.page_count_stored(doc_id) == 2
    catalog.complete_document(doc_id, stages={"words": "v1"}, pending=["embed"])
    catalog.add_name(doc_id, "/in/copy-of-a.pdf")
    doc = catalog.get_document(doc_id)
    assert doc is not None and doc.status == "complete" and doc.pending == ["embed"]
    assert doc.names == ["/in/a.pdf", "/in/copy-of-a.pdf"] and doc.words_sources == {"text_layer": 2}
    assert catalog.find_document("copy-of-a.pdf").doc_id == doc_id
    assert catalog.find_document(doc_id[:10]).doc_id == doc_id
    got = catalog.get_pages([(doc_id, 2), (doc_id, 9), (doc_id, 1)])
    assert [r.page.page_no for r in got] == [2, 1] and got[0].words[3].text == "wörd3"
    assert [r.page.page_no for r in catalog.iter_pages(doc_id, batch=1)] == [1, 2]
    assert [d.doc_id for d in catalog.list_documents("c1")] == [doc_id] and catalog.list_documents("zz") == []
    catalog.delete_document(doc_id)
    assert catalog.get_document(doc_id) is None and catalog.page_count_stored(doc_id) == 0
    with pytest.raises(NotFound, match="pagelens docs list"):
        catalog.find_document("nope.pdf")


def test_a_catalog_from_before_headings_is_upgraded_in_place(catalog: Catalog) -> None:
    """A catalog made before pages had headings (no ``headings`` column) opens, gains the column, keeps its rows
    and stores headings from then on — on SQLite and PostgreSQL alike."""
    doc_id = uuid.uuid4().hex * 2
    catalog.begin_document(doc_id=doc_id, name="old.pdf", kind="pdf", collection="c", size_bytes=1, page_count=2)
    old = PageRecord(Page(doc_id=doc_id, page_no=1, width_pt=612, height_pt=792, words_source="text_layer",
                          word_count=5), WordTable.from_words(_words(5), "text_layer"))
    catalog.put_pages([old])
    with catalog.engine.begin() as c:
        c.exec_driver_sql("ALTER TABLE pages DROP COLUMN headings")
    url = catalog.engine.url.render_as_string(hide_password=False)
    reopened = Catalog(url)
    try:
        assert reopened.get_page(doc_id, 1).page.headings == []
        new = PageRecord(Page(doc_id=doc_id, page_no=2, width_pt=612, height_pt=792, words_source="text_layer",
                              word_count=5, headings=["2.4 Command Line Editing", "Profiling"]),
                         WordTable.from_words(_words(5), "text_layer"))
        reopened.put_pages([new])
        assert reopened.get_page(doc_id, 2).page.headings == ["2.4 Command Line Editing", "Profiling"]
    finally:
        reopened.close()


def test_jobs_claim_in_order_report_progress_cancel_and_requeue(catalog: Catalog) -> None:
    from schemas.errors import Conflict

    a = catalog.add_job("a" * 32, "ingest", {"files": ["x.pdf"], "collection": None})
    b = catalog.add_job("b" * 32, "extract", {"schema": {"type": "object"}, "docs": [], "max_pages": 8})
    c = catalog.add_job("c" * 32, "ingest", {"files": ["y.pdf"], "collection": "k"})
    assert (a.state, a.started_at, a.params["files"]) == ("queued", None, ["x.pdf"])
    assert [j.job_id for j in catalog.list_jobs()] == [c.job_id, b.job_id, a.job_id]  # newest first
    assert catalog.cancel_job(c.job_id).state == "cancelled"  # queued: never runs
    first = catalog.claim_job("host:1")
    assert first is not None and first.job_id == a.job_id and first.state == "running" and first.started_at
    assert not catalog.update_job(a.job_id, progress={"files_done": 1, "files_total": 2, "pages_done": 7,
                                                      "pages_total": 9, "current": "x.pdf"})
    assert catalog.get_job(a.job_id).progress.pages_done == 7
    assert catalog.cancel_job(a.job_id).cancel_requested and catalog.get_job(a.job_id).state == "running"
    assert catalog.update_job(a.job_id, progress=None)  # the runner reads the request at its next update
    catalog.finish_job(a.job_id, "cancelled", errors=[{"path": "x.pdf", "doc_id": None, "code": "c", "message": "m"}])
    ended = catalog.get_job(a.job_id)
    assert ended.state == "cancelled" and ended.finished_at and ended.errors[0].code == "c"
    with pytest.raises(Conflict, match="already ended"):
        catalog.cancel_job(a.job_id)
    second = catalog.claim_job("host:2")
    assert second is not None and second.job_id == b.job_id and catalog.claim_job("host:3") is None
    assert catalog.job_owners("running") == {b.job_id: "host:2"}
    catalog.requeue_job(b.job_id)
    assert catalog.get_job(b.job_id).state == "queued" and catalog.job_owners("running") == {}
    catalog.finish_job(b.job_id, "done", result=[{"doc_id": None, "path": "p", "status": "skipped"}])
    assert [j.job_id for j in catalog.list_jobs("done")] == [b.job_id]
    assert catalog.get_job(b.job_id).result == [BatchResult(doc_id=None, path="p", status="skipped")]
    with pytest.raises(NotFound):
        catalog.get_job("nope")
