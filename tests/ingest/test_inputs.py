"""Careless input and what the report says about it: empty files, broken images, encrypted PDFs given with
their password, uploads under the client's name, each file's own time, a file moved to another collection, and
readers killed from outside."""

from __future__ import annotations

import time
from pathlib import Path

import pymupdf
import pytest

from app.service import Service
from ingest.reader import ReadDone, ReaderPool, ReadFailed, ReadJob, ReadOptions
from tests.conftest import BADPDF, CORPUS, make_settings

ENCRYPTED = BADPDF / "files/pypdf/encryption__r4-aes-user-password.pdf"  # user password "asdfzxcv"


def _pdf(path: Path, pages: int = 1, text: str = "relational databases store tables") -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page().insert_text((72, 72), f"{text} {i + 1}", fontsize=12)
    doc.save(str(path))
    return path


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    s = Service(make_settings(tmp_path / "data", None))
    yield s
    s.close()


@pytest.mark.parametrize("name", ["empty.png", "empty.pdf", "empty.jpg", "empty", "empty.weird"])
def test_an_empty_file_is_empty_file_and_nothing_is_stored(svc: Service, tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    f = svc.ingest([tmp_path / name]).files[0]
    assert f.status == "failed" and f.error is not None and f.error.code == "empty_file", f
    assert "0 bytes" in f.error.message
    assert svc.files.doc_ids() == set() and svc.list_documents() == []


def test_a_broken_image_is_never_an_invalid_pdf(svc: Service, tmp_path: Path) -> None:
    png = tmp_path / "scan.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # the PNG signature, then nothing decodable
    f = svc.ingest([png]).files[0]
    assert f.status == "failed" and f.error is not None and f.error.code == "invalid_image", f
    assert "PDF" not in f.error.message
    assert svc.list_documents() == []


@pytest.mark.corpus
def test_an_encrypted_pdf_ingested_with_its_password_renders_later(svc: Service) -> None:
    report = svc.ingest([ENCRYPTED], password="asdfzxcv")
    f = report.files[0]
    assert f.status == "ingested" and f.doc_id is not None, f
    stored = svc.files.path_of(f.doc_id)
    assert not pymupdf.open(str(stored)).needs_pass  # the stored copy is decrypted
    png = svc.page_png(f.doc_id, 1, width=300)
    assert png.startswith(b"\x89PNG")
    # the document keeps the id of the bytes the user has: ingesting them again is "unchanged"
    assert svc.ingest([ENCRYPTED], password="asdfzxcv").files[0].status == "unchanged"
    assert svc.ingest([ENCRYPTED]).files[0].status == "unchanged"


def test_uploads_are_catalogued_under_the_clients_name(svc: Service, tmp_path: Path) -> None:
    data = _pdf(tmp_path / "x.pdf").read_bytes()
    report = svc.ingest_files([("liboctave.pdf", data)])
    assert [f.path for f in report.files] == ["liboctave.pdf"]
    doc = svc.get_document("liboctave.pdf")
    assert doc.name == "liboctave.pdf" and all("uploads" not in n for n in doc.names)
    assert svc.search("relational", k=1)[0].path == "liboctave.pdf"
    # the same bytes uploaded again under another name: one document, both names
    again = svc.ingest_files([("copy of liboctave.pdf", data)]).files[0]
    assert again.status == "unchanged" and again.path == "copy of liboctave.pdf"
    assert svc.get_document("copy of liboctave.pdf").doc_id == doc.doc_id


def test_each_file_reports_its_own_time(svc: Service, tmp_path: Path) -> None:
    big = _pdf(tmp_path / "a-long.pdf", pages=400)
    broken = tmp_path / "b-broken.pdf"
    broken.write_bytes(b"this is not a pdf at all " * 40)
    small = _pdf(tmp_path / "c-small.pdf")
    report = svc.ingest([big, broken, small])
    by = {Path(f.path).name: f for f in report.files}
    assert by["a-long.pdf"].status == "ingested" and by["c-small.pdf"].status == "ingested"
    assert by["b-broken.pdf"].status == "failed"
    assert by["a-long.pdf"].seconds > 0
    # the files after the long one waited for it; their own time excludes that wait
    for name in ("b-broken.pdf", "c-small.pdf"):
        assert by[name].seconds < 0.5 * by["a-long.pdf"].seconds, (name, by[name].seconds, report.seconds)


def test_the_same_file_in_two_collections_is_two_documents(svc: Service, tmp_path: Path) -> None:
    from schemas.ids import doc_id_of_file

    pdf = _pdf(tmp_path / "notes.pdf")
    first = svc.ingest([pdf], collection="drafts").files[0]
    second = svc.ingest([pdf], collection="final").files[0]
    assert first.status == second.status == "ingested" and first.doc_id != second.doc_id
    assert doc_id_of_file(pdf) not in (first.doc_id, second.doc_id), "outside the default collection: derived ids"
    assert {d.collection for d in svc.list_documents()} == {"drafts", "final"}
    for where in ("drafts", "final"):
        assert [h.path for h in svc.search("relational", k=3, collection=where)] == [str(pdf)]
    assert svc.ingest([pdf], collection="final").files[0].status == "unchanged", "re-ingest stays a no-op"
    svc.delete_document(second.doc_id or "")
    assert [h.path for h in svc.search("relational", k=3, collection="drafts")] == [str(pdf)], "the other stays"
    assert svc.files.path_of(first.doc_id or "").exists(), "with the stored bytes it needs"
    assert svc.ingest([pdf]).files[0].doc_id == doc_id_of_file(pdf), "the default collection: the bare hash"


def test_a_store_made_before_tenancy_keeps_its_ids(svc: Service, tmp_path: Path) -> None:
    """A document catalogued under the bare hash in a non-default collection (as every document was) is found
    again there, unchanged; the same bytes in the default collection become a document of their own."""
    from schemas.ids import doc_id_of_file

    pdf = _pdf(tmp_path / "old.pdf")
    sha = doc_id_of_file(pdf)
    svc.ingest([pdf])
    svc.ingestor.library.move(sha, "research")  # what an older PageLens left: the bare hash, outside the default
    assert svc.ingest([pdf], collection="research").files[0].status == "unchanged"
    again = svc.ingest([pdf]).files[0]
    assert again.status == "ingested" and again.doc_id not in (None, sha)
    assert svc.get_document(sha).collection == "research"


def test_a_reader_killed_while_idle_is_replaced(tmp_path: Path) -> None:
    opts = ReadOptions(render_dpi=20, ocr_dpi=100, max_render_pixels=10**6, ocr_min_words=0, max_pages=100,
                       memory_mb=3072, batch_pages=8)
    jobs = [ReadJob(job_id=i, path=_pdf(tmp_path / f"{i}.pdf"), kind="pdf", password=None, render=False)
            for i in range(3)]
    pool = ReaderPool(opts, workers=1, timeout_s=60)
    finished = []
    for ev in pool.run(jobs):
        if isinstance(ev, ReadDone | ReadFailed):
            finished.append((ev.job.job_id, "done" if isinstance(ev, ReadDone) else "failed"))
            if ev.job.job_id == 0:  # kill the (now idle) reader before it is given the next file
                proc = pool._workers[0].proc
                proc.kill()
                proc.join(5)
                time.sleep(0.1)
    assert finished == [(0, "done"), (1, "done"), (2, "done")]


@pytest.mark.corpus
def test_damaged_input_that_opens_is_ingested_with_a_warning(svc: Service, tmp_path: Path) -> None:
    """A PDF cut short (MuPDF repairs it and recovers its pages) and a JPEG cut short are ingested, each with a
    warning on its outcome that the file is damaged; an intact file has none (issue 17, item 3)."""
    import pymupdf

    doc = pymupdf.open()
    for i in range(5):
        doc.new_page().insert_text((50, 50), f"page {i + 1} of the damaged report")
    whole = tmp_path / "whole.pdf"
    doc.save(whole)
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.8)])  # no cross-reference table, no trailer
    receipt = next((CORPUS / "receipts" / "img").glob("*.jpg"))
    jpg = tmp_path / "cut.jpg"
    jpg.write_bytes(receipt.read_bytes()[:30_000])
    by = {Path(f.path).name: f for f in svc.ingest([whole, cut, jpg]).files}
    assert by["whole.pdf"].status == "ingested" and by["whole.pdf"].warnings == []
    assert by["cut.pdf"].status == "ingested" and by["cut.pdf"].pages == 5
    assert any("PDF is damaged" in w for w in by["cut.pdf"].warnings), by["cut.pdf"].warnings
    assert by["cut.jpg"].status == "ingested" and any("JPEG ends early" in w for w in by["cut.jpg"].warnings)
