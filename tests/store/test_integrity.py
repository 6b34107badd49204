"""Data integrity: exact name matching, a catalog shared by two vector stores, a database lost mid-ingest, and
what killed runs leave behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.service import Service
from schemas.errors import NotFound
from tests.conftest import PDFS, make_settings
from tests.store.test_catalog import catalog  # noqa: F401  (the SQLite + PostgreSQL fixture)

pytestmark = pytest.mark.corpus


def _doc(cat: object, doc_id: str, name: str) -> None:
    cat.begin_document(doc_id=doc_id, name=name, kind="pdf", collection="c", size_bytes=1, page_count=1)  # type: ignore[attr-defined]
    cat.complete_document(doc_id, stages={}, pending=[])  # type: ignore[attr-defined]


def test_like_wildcards_in_references_are_plain_characters(catalog: object) -> None:  # noqa: F811
    _doc(catalog, "0abc" + "1" * 60, "/in/report-2023.pdf")
    _doc(catalog, "0abd" + "2" * 60, "/in/other.pdf")
    find = catalog.find_document  # type: ignore[attr-defined]
    assert find("report-2023.pdf").doc_id.startswith("0abc")
    for ref in ("report_2023.pdf", "%2023.pdf", "0ab%", "0-abs%", "_abc11", "0abc1_"):
        with pytest.raises(NotFound):
            find(ref)
    assert find("0abc11").doc_id.startswith("0abc")  # an id prefix is still an id prefix


def test_catalog_shared_by_two_vector_stores_does_not_report_missing_points_unchanged(tmp_path: Path) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = PDFS / "refcard-a4.pdf", PDFS / "R-data.pdf"

    def service(name: str) -> Service:
        s = make_settings(tmp_path / name, None)
        return Service(s.model_copy(update={"database_url": shared}))

    x = service("x")
    assert x.ingest([a]).files[0].status == "ingested"
    x.close()
    y = service("y")
    assert y.ingest([b]).files[0].status == "ingested"
    y.close()
    x = service("x")
    try:
        out = x.ingest([a, b]).files
        assert [f.status for f in out] == ["unchanged", "ingested"]  # b's points were never in x
        assert x.index.count(out[1].doc_id or "") == 41
        assert any(h.doc_id == out[1].doc_id for h in x.search("Importing data from spreadsheets", k=5))
    finally:
        x.close()


def test_losing_the_database_mid_ingest_stops_with_a_report_and_converges(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    settings = make_settings(tmp_path / "d", None)
    svc = Service(settings)
    gone = tmp_path / "gone"
    real = svc.catalog.engine

    def pull_the_plug(p: object) -> None:
        if getattr(p, "pages_done", 0) > 0:  # mid-run, after the first pages were written
            svc.catalog.engine = create_engine(f"sqlite:///{gone}/no/such/dir/c.db")

    try:
        report = svc.ingest([PDFS / "R-data.pdf", PDFS / "refcard-a4.pdf"], on_progress=pull_the_plug)
        assert [f.status for f in report.files] == ["failed", "failed"]
        assert {f.error.code for f in report.files if f.error} == {"store_error"}
        assert "PAGELENS_DATABASE_URL" in (report.files[0].error.message if report.files[0].error else "")
        svc.catalog.engine = real
        again = svc.ingest([PDFS / "R-data.pdf", PDFS / "refcard-a4.pdf"])
        assert [f.status for f in again.files] == ["ingested", "ingested"]
        assert svc.index.count() == 41 + 3 and [d.status for d in svc.list_documents()] == ["complete"] * 2
    finally:
        svc.catalog.engine = real
        svc.close()


def test_killed_runs_leave_nothing_behind_and_partial_documents_are_not_searchable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d", None)
    svc = Service(settings)
    try:
        assert svc.ingest([PDFS / "refcard-a4.pdf"]).files[0].status == "ingested"
        doc = svc.list_documents()[0]
        # a run killed mid-way: the document is partial again, a batch member's file was copied in but never
        # started, a half-written copy and an upload folder of a dead process are lying around
        svc.catalog.begin_document(doc_id=doc.doc_id, name=doc.name, kind="pdf", collection="default",
                                   size_bytes=1, page_count=3)
        assert svc.search("Octave", k=5) == []  # partial: not searchable
        orphan = "f" * 64
        svc.files.put(orphan, PDFS / "refcard-a4.pdf")
        (svc.files.root / "ff" / ".incoming-xyz").write_bytes(b"half")
        dead = settings.data_dir / "uploads" / "999999999-abc"
        dead.mkdir(parents=True)
        (dead / "x.pdf").write_bytes(b"%PDF")
        mine = settings.data_dir / "uploads" / f"{os.getpid()}-live"
        mine.mkdir()
        removed = svc.reconcile()
        assert set(removed) == {doc.doc_id, orphan}
        assert not svc.files.has(orphan) and not list(svc.files.root.glob("*/.incoming-*"))
        assert not dead.exists() and mine.exists()
        assert svc.list_documents() == [] and svc.index.count() == 0
        shutil.rmtree(mine)
    finally:
        svc.close()
