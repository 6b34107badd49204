"""Ingest real PDFs end to end: words, BM25 and SigLIP vectors, catalog, idempotence, pending stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import pytest

from app.service import Service
from ingest import pipeline
from schemas.settings import Settings
from store import bm25
from tests.conftest import BADPDF, PDFS, make_settings

pytestmark = pytest.mark.corpus


def _consistent(svc: Service) -> None:
    """Every complete document has one point per page and a page row per point; nothing else exists."""
    docs = svc.list_documents()
    assert all(d.status == "complete" for d in docs)
    assert svc.index.doc_ids() == {d.doc_id for d in docs}
    for d in docs:
        assert svc.index.count(d.doc_id) == d.page_count == svc.catalog.page_count_stored(d.doc_id)
        assert svc.index.pages_of(d.doc_id) == set(range(1, d.page_count + 1))
        assert svc.files.has(d.doc_id)


def test_ingest_real_pdfs_then_search(service: Service) -> None:
    report = service.ingest([PDFS / "R-data.pdf", PDFS / "refcard-a4.pdf"])
    assert [f.status for f in report.files] == ["ingested", "ingested"]
    assert [f.pages for f in report.files] == [41, 3]
    assert all(f.pending == [] for f in report.files)
    _consistent(service)
    doc = service.get_document("R-data.pdf")
    assert doc.words_sources == {"text_layer": 41} and set(doc.stages) == {"words", "index", "embed", "ocr_words"}

    hits = service.search("spreadsheet import", k=3)
    assert hits[0].path.endswith("R-data.pdf")
    for h in hits:
        assert 1 <= h.page <= 41
        for w in h.words:  # a word matches by its BM25 terms ("OLE::SpreadSheet::ParseExcel" has "spreadsheet")
            assert bm25.terms(w.text) & bm25.terms("spreadsheet import")
            assert 0 <= w.bbox.x0 < w.bbox.x1 <= 1 and 0 <= w.bbox.y0 < w.bbox.y1 <= 1
    # the matched words are really on that page, where the text layer puts them
    page = pymupdf.open(PDFS / "R-data.pdf")[hits[0].page - 1]
    texts = {w[4] for w in page.get_text("words")}
    assert hits[0].words and all(w.text in texts for w in hits[0].words)
    # filters
    assert service.search("spreadsheet import", k=5, collection="other") == []
    only = service.search("matrix", k=5, doc_ids=[service.get_document("refcard-a4.pdf").doc_id])
    assert only and {h.path for h in only} == {str(PDFS / "refcard-a4.pdf")}


def test_reingest_unchanged_without_reading(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    service.ingest([PDFS / "refcard-a4.pdf"])
    before = service.index.count()

    def no_reading(*_a: object, **_k: object) -> None:
        raise AssertionError("an unchanged file must not be read")

    monkeypatch.setattr(pipeline.ReaderPool, "_spawn", no_reading)
    again = service.ingest([PDFS / "refcard-a4.pdf"])
    assert [f.status for f in again.files] == ["unchanged"]
    assert service.index.count() == before == 3
    _consistent(service)


def test_encoder_unavailable_then_available_embeds_without_rereading(tmp_path: Path, tiny_siglip: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    svc = Service(make_settings(data, str(tmp_path / "no-such-checkpoint")))
    r1 = svc.ingest([PDFS / "refcard-a4.pdf"])
    assert r1.files[0].status == "ingested" and r1.files[0].pending == ["embed"]
    assert "embed" not in svc.get_document("refcard-a4.pdf").stages
    assert svc.ingestor.encoder_error and "PAGELENS_ENCODER__MODEL" in svc.ingestor.encoder_error
    assert svc.search("matrix", k=2), "BM25 search works without the encoder"
    r2 = svc.ingest([PDFS / "refcard-a4.pdf"])  # still no encoder: nothing new written
    assert r2.files[0].status == "unchanged" and r2.files[0].pending == ["embed"]
    words_before = [(r.table.texts, r.table.boxes.tolist()) for r in svc.catalog.iter_pages(r1.files[0].doc_id or "")]
    svc.close()

    modes: list[str] = []
    real_run = pipeline.ReaderPool.run

    def spy(self: pipeline.ReaderPool, jobs: list[pipeline.ReadJob]):  # type: ignore[no-untyped-def]
        modes.extend(j.mode for j in jobs)
        return real_run(self, jobs)

    monkeypatch.setattr(pipeline.ReaderPool, "run", spy)
    svc = Service(make_settings(data, str(tiny_siglip)))
    r3 = svc.ingest([PDFS / "refcard-a4.pdf"])
    assert r3.files[0].status == "ingested" and r3.files[0].pending == []
    assert modes == ["render"], "the pending embed stage ran by itself, without re-reading words"
    assert [(r.table.texts, r.table.boxes.tolist())
            for r in svc.catalog.iter_pages(r3.files[0].doc_id or "")] == words_before
    assert svc.index.dense_dims() == {"image": 64}
    _consistent(svc)
    r4 = svc.ingest([PDFS / "refcard-a4.pdf"])
    assert r4.files[0].status == "unchanged"
    svc.close()


def test_changing_encoder_reembeds(tmp_path: Path, tiny_siglip: Path) -> None:
    from tests.tiny_models import build_tiny_siglip

    other = build_tiny_siglip(tmp_path / "other-siglip", width=32, seed=1)
    data = tmp_path / "data"
    with_a = Service(make_settings(data, str(tiny_siglip)))
    with_a.ingest([PDFS / "refcard-a4.pdf"])
    with_a.close()
    with_b = Service(make_settings(data, str(other)))
    r = with_b.ingest([PDFS / "refcard-a4.pdf"])
    assert r.files[0].status == "ingested"
    assert with_b.get_document("refcard-a4.pdf").stages["embed"].startswith(f"open_clip:{other}")
    assert with_b.index.dense_dims() == {"image": 32}
    assert with_b.search("matrix inverse", k=1)
    _consistent(with_b)
    with_b.close()


def _scanned_copy(src: Path, page_no: int, out: Path, dpi: int = 150) -> list[str]:
    """An image-only PDF of one real page (as a scanner would make), plus that page's text-layer words."""
    page = pymupdf.open(src)[page_no - 1]
    words = [w[4] for w in page.get_text("words")]
    pix = page.get_pixmap(dpi=dpi)
    doc = pymupdf.open()
    p = doc.new_page(width=page.rect.width, height=page.rect.height)
    p.insert_image(p.rect, stream=pix.tobytes("png"))
    doc.save(out)
    assert not pymupdf.open(out)[0].get_text("words")
    return words


def test_scanned_pdf_is_ocred_and_found(service: Service, tmp_path: Path) -> None:
    scan = tmp_path / "scanned-r-data-p5.pdf"
    truth = _scanned_copy(PDFS / "R-data.pdf", 5, scan)
    report = service.ingest([scan])
    assert report.files[0].status == "ingested"
    doc = service.get_document(scan.name)
    assert doc.words_sources == {"ocr": 1}
    rec = service.catalog.get_page(doc.doc_id, 1)
    ocr_texts = [w.text for w in rec.words]
    assert all(w.source == "ocr" and 0 < w.confidence <= 1 for w in rec.words)
    recall = len({t.lower() for t in truth} & {t.lower() for t in ocr_texts}) / len({t.lower() for t in truth})
    assert recall > 0.6
    # OCR boxes lie where the text layer has the same words
    src_page = pymupdf.open(PDFS / "R-data.pdf")[4]
    layer = {}
    for x0, y0, x1, y1, t, *_ in src_page.get_text("words"):
        layer.setdefault(t, (x0 / src_page.rect.width, y0 / src_page.rect.height,
                             x1 / src_page.rect.width, y1 / src_page.rect.height))
    close = [abs(np.mean([w.bbox.y0, w.bbox.y1]) - np.mean([layer[w.text][1], layer[w.text][3]])) < 0.02
             for w in rec.words if w.text in layer and truth.count(w.text) == 1 and len(w.text) > 4]
    assert len(close) > 10 and np.mean(close) > 0.9
    distinctive = max((t for t in ocr_texts if t in truth and t.isalpha()), key=len)
    hits = service.search(distinctive, k=3)
    assert any(h.doc_id == doc.doc_id for h in hits)


def test_png_page_image_is_a_one_page_document(service: Service, tmp_path: Path) -> None:
    page = pymupdf.open(PDFS / "refcard-a4.pdf")[0]
    png = tmp_path / "card.png"
    page.get_pixmap(dpi=110).save(png)
    r = service.ingest([png])
    assert r.files[0].status == "ingested" and r.files[0].pages == 1
    doc = service.get_document("card.png")
    assert doc.kind == "image" and doc.words_sources == {"ocr": 1}


def test_password_protected(service: Service) -> None:
    enc = BADPDF / "files/pypdf/encryption__r4-aes-user-password.pdf"
    r = service.ingest([enc])
    assert r.files[0].status == "failed" and r.files[0].error is not None
    assert r.files[0].error.code == "password_required" and "--password" in r.files[0].error.message
    assert service.list_documents() == [] and service.index.count() == 0
    wrong = service.ingest([enc], password="nope")
    assert wrong.files[0].error is not None and wrong.files[0].error.code == "wrong_password"
    ok = service.ingest([enc], password="asdfzxcv")
    assert ok.files[0].status == "ingested" and ok.files[0].pages == 1
    _consistent(service)


def test_collections_and_delete(service: Service) -> None:
    service.ingest([PDFS / "refcard-a4.pdf"], collection="cards")
    service.ingest([PDFS / "R-data.pdf"], collection="manuals")
    assert {h.collection for h in service.search("data matrix", k=10, collection="cards")} == {"cards"}
    assert [d.collection for d in service.list_documents("manuals")] == ["manuals"]
    copy = service.ingest([PDFS / "refcard-a4.pdf"], collection="manuals").files[0]  # another document
    assert copy.status == "ingested"
    assert {h.collection for h in service.search("matrix", k=10)} == {"cards", "manuals"}
    doc = service.delete_document(copy.doc_id or "")
    assert service.index.count(doc.doc_id) == 0 and not service.files.has(doc.doc_id)
    assert service.catalog.get_document(doc.doc_id) is None
    assert service.search("matrix", k=3, collection="cards"), "the copy in cards is untouched"
    assert [d.collection for d in service.list_documents() if d.name.endswith("refcard-a4.pdf")] == ["cards"]
    _consistent(service)


def test_same_bytes_under_two_names(service: Service, tmp_path: Path) -> None:
    copy = tmp_path / "copy.pdf"
    copy.write_bytes((PDFS / "refcard-a4.pdf").read_bytes())
    r = service.ingest([PDFS / "refcard-a4.pdf", copy])
    assert [f.status for f in r.files] == ["ingested", "unchanged"]
    assert r.files[0].doc_id == r.files[1].doc_id
    assert service.get_document("copy.pdf").names == sorted([str(PDFS / "refcard-a4.pdf"), str(copy)])
    assert service.index.count() == 3


def test_settings_env_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAGELENS_DATA_DIR", str(tmp_path / "x"))
    monkeypatch.setenv("PAGELENS_INGEST__OCR_MIN_WORDS", "7")
    s = Settings()
    assert s.data_dir == tmp_path / "x" and s.ingest.ocr_min_words == 7
    assert s.catalog_url.endswith("x/catalog.db")


def test_errors_name_the_file_as_given_not_the_stored_copy(service: Service, tmp_path: Path) -> None:
    junk = tmp_path / "notes"  # no suffix: tried as a PDF
    junk.write_text("just some text, not a PDF\n" * 20)
    f = service.ingest([junk]).files[0]
    assert f.status == "failed" and f.error is not None and f.error.code == "invalid_pdf"
    assert f.error.message.startswith("notes ") and "files/" not in f.error.message
    assert (f.doc_id or "")[:12] not in f.error.message


def test_progress_counts_files_known_from_the_start_and_names_the_file_being_read(service: Service) -> None:
    """The bar's total is the number of files (it never grows), its completion never goes back, a file being read
    moves it by its share of pages, and with one reader the file named is the one being read."""
    files = [PDFS / "refcard-a4.pdf", PDFS / "R-data.pdf"]
    seen: list[pipeline.Progress] = []
    service.ingest(files, workers=1, on_progress=seen.append)
    assert {p.files_total for p in seen} == {2}
    done = [p.work_done for p in seen]
    assert all(d is not None for d in done) and done == sorted(done), "completion never goes back"
    assert done[-1] == 2.0
    assert any(0 < d < 1 or 1 < d < 2 for d in done if d is not None), "a file moves the bar by its share"
    reading_r_data = [p for p in seen if p.files_done == 1 and p.pages_done > 3]
    assert reading_r_data and all(p.current == "R-data.pdf" for p in reading_r_data)
