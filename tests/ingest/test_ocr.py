"""OCR words from character geometry: real RapidOCR on pages rendered by PyMuPDF (base-14 fonts, no system
fonts needed), the splitting and reading-order rules on hand-made geometry, and what ingest and search make
of it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pymupdf
import pytest

from ingest.ocr import _Line, _Word, ocr_version, ocr_words, reading_order, split_chars
from ingest.pdf import text_words
from schemas.wordtable import WordTable
from tests.conftest import PDFS


def _invoice_scan(path: Path | None = None) -> np.ndarray:
    """A clean synthetic invoice scan: RapidOCR reads its first line as 'INVOICENUMBER4711'."""
    doc = pymupdf.open()
    p = doc.new_page(width=420, height=200)
    p.insert_text((30, 60), "INVOICE NUMBER 4711  TOTAL 99.00", fontname="cour", fontsize=13)
    p.insert_text((30, 100), "MR D.I.Y. (JOHOR) SDN BHD", fontname="helv", fontsize=13)
    p.insert_text((30, 140), "Date: 11/01/2019   Qty 1 x 19.00", fontname="cour", fontsize=12)
    pix = p.get_pixmap(dpi=144)
    if path is not None:
        pix.save(path)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3).copy()


def test_glued_ocr_lines_are_split_into_words_with_their_lines() -> None:
    table = ocr_words(_invoice_scan())
    for word in ("INVOICE", "NUMBER", "4711", "TOTAL", "99.00", "SDN", "BHD", "11/01/2019", "19.00"):
        assert word in table.texts, (word, table.texts)
    i = table.texts.index
    assert table.boxes[i("INVOICE")][2] < table.boxes[i("NUMBER")][0] < table.boxes[i("4711")][0]
    rows = [table.lines[i(w)] for w in ("INVOICE", "SDN", "11/01/2019")]
    assert rows == sorted(rows) and len(set(rows)) == 3 and table.lines[i("4711")] == table.lines[i("TOTAL")]
    assert list(table.lines) == sorted(table.lines)  # reading order
    assert table.edges is not None and len(table.edges) == sum(len(t) + 1 for t in table.texts)
    off = table.edge_offsets()
    for k in range(len(table)):
        e = table.edges[off[k]:off[k + 1]]
        assert e[0] == pytest.approx(0, abs=0.01) and e[-1] == pytest.approx(1, abs=0.01) and np.all(np.diff(e) >= 0)
    assert np.all((table.conf > 0) & (table.conf <= 1))


def _chars(text: str, centres: list[float]) -> tuple[list[str], np.ndarray]:
    boxes = np.array([[c - 4, 0, c + 4, 10] for c in centres], np.float64)
    return list(text), boxes


def test_split_at_spaces_and_at_wide_gaps_only() -> None:
    chars, boxes = _chars("MRDIYSDN", [10, 20, 40, 50, 60, 80, 90, 100])  # pitch 10, gaps of 20
    words = split_chars(chars, boxes, [0.9] * 8)
    assert [w.text for w in words] == ["MR", "DIY", "SDN"]
    assert words[1].box[0] == 36 and words[1].box[2] == 64 and words[1].edges[0] == 36 and words[1].edges[-1] == 64
    chars, boxes = _chars("AB CD", [10, 20, 30, 40, 50])
    assert [w.text for w in split_chars(chars, boxes, [0.9] * 5)] == ["AB", "CD"]
    chars, boxes = _chars("mini", [10, 20, 27, 34])  # a wide "m" next to a narrow "i" is not a gap
    assert [w.text for w in split_chars(chars, boxes, [0.9] * 4)] == ["mini"]
    chars, boxes = _chars("AB", [10, 60])  # too few characters to know the pitch: spaces only
    assert [w.text for w in split_chars(chars, boxes, [0.5, 0.7])] == ["AB"]
    assert split_chars(chars, boxes, [0.5, 0.7])[0].conf == pytest.approx(0.6)


def test_reading_order_rows_tolerate_skew_and_columns() -> None:
    angle = math.radians(4)

    def line(x: float, y: float, w: float, text: str) -> _Line:
        pts = np.array([[0, 0], [w, 0], [w, 20], [0, 20]], np.float64)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        quad = pts @ rot.T + [x, y + x * math.tan(angle)]
        return _Line(quad, [_Word(text, [0, 0, 1, 1], 1.0, [0, 1])])

    # two columns per row on a page rotated by 4°: the right column sits ~28 px lower than the left
    lines = [line(400, 100, 150, "33.90"), line(20, 100, 200, "TOTAL"), line(20, 140, 200, "CASH"),
             line(400, 140, 150, "50.00"), line(20, 60, 300, "ITEMS")]
    rows = [[ln.words[0].text for ln in row] for row in reading_order(lines)]
    assert rows == [["ITEMS"], ["TOTAL", "33.90"], ["CASH", "50.00"]]


def test_wordtable_round_trip_keeps_lines_and_edges() -> None:
    table = ocr_words(_invoice_scan())
    back = WordTable.decode(table.encode())
    assert back.texts == table.texts and back.source == "ocr"
    assert np.array_equal(back.lines, table.lines)
    assert back.edges is not None and np.allclose(back.edges, table.edges, atol=1 / 255)  # type: ignore[arg-type]
    sub = table.take([3, 1])
    assert sub.texts == [table.texts[3], table.texts[1]] and list(sub.lines) == [table.lines[3], table.lines[1]]
    assert len(sub.edges) == len(table.texts[3]) + len(table.texts[1]) + 2  # type: ignore[arg-type]


@pytest.mark.corpus
def test_text_layer_words_carry_their_printed_lines() -> None:
    table = text_words(pymupdf.open(PDFS / "R-data.pdf")[4])
    assert table.edges is None and len(set(table.lines.tolist())) > 20
    back = WordTable.decode(table.encode())
    assert np.array_equal(back.lines, table.lines)
    for ln in set(table.lines.tolist()):  # words of one line sit on one baseline
        ys = table.boxes[table.lines == ln][:, 3]
        assert ys.max() - ys.min() < 0.01


def test_older_word_blobs_still_decode_with_inferred_lines() -> None:
    import struct
    import zlib

    texts = ["Total", "due", "42", "next", "line"]
    boxes = np.array([[0.1, 0.1, 0.2, 0.12], [0.21, 0.1, 0.3, 0.12], [0.31, 0.1, 0.35, 0.12],
                      [0.1, 0.2, 0.2, 0.22], [0.21, 0.2, 0.3, 0.22]], np.float32)
    joined = "\x1f".join(texts).encode()
    raw = (b"PLW1" + struct.pack("<BII", 0, 5, len(joined)) + joined
           + np.rint(boxes * 65535).astype("<u2").tobytes() + np.full(5, 255, np.uint8).tobytes())
    table = WordTable.decode(zlib.compress(raw))
    assert table.texts == texts and list(table.lines) == [0, 0, 0, 1, 1] and table.edges is None


def test_scanned_invoice_is_searchable_by_its_split_words(service: object, tmp_path: Path) -> None:
    from app.service import Service

    assert isinstance(service, Service)
    png = tmp_path / "invoice-scan.png"
    _invoice_scan(png)
    assert service.ingest([png]).files[0].status == "ingested"
    doc = service.get_document(png.name)
    for q in ("4711", "JOHOR", "99.00"):
        hits = service.search(q, k=3)
        assert hits and hits[0].doc_id == doc.doc_id, q
        assert any(q.lower() in w.text.lower() for w in hits[0].words), (q, [w.text for w in hits[0].words])
    res = service.locate(doc.doc_id, 1, "11 January 2019")
    assert res.status == "verified" and res.matched_text == "11/01/2019"


@pytest.mark.corpus
def test_new_word_splitting_rereads_ocr_documents_and_nothing_else(service: object, tmp_path: Path) -> None:
    from app.service import Service

    assert isinstance(service, Service)
    png = tmp_path / "invoice-scan.png"
    _invoice_scan(png)
    pdf = PDFS / "refcard-a4.pdf"
    assert {f.status for f in service.ingest([png, pdf]).files} == {"ingested"}
    cat = service.catalog
    for ref in (png.name, pdf.name):  # a store written before the OCR word splitting existed, when the OCR engine
        doc = service.get_document(ref)  # was part of the words stage ("pymupdf-X+rapidocr-onnxruntime-1.4.4@…")
        stages = {k: v for k, v in doc.stages.items() if k != "ocr_words"}
        stages["words"] = stages["words"].replace("@", "+rapidocr-onnxruntime-1.4.4@", 1)
        cat.complete_document(doc.doc_id, stages=stages, pending=doc.pending)
    seen = service.ingest([png, pdf])
    by_name = {Path(f.path).name: f.status for f in seen.files}
    reads = [n for n, s in by_name.items() if s == "ingested"]
    assert reads == [png.name] and by_name[pdf.name] == "unchanged"
    assert service.get_document(png.name).stages["ocr_words"] == ocr_version("rapidocr")
    assert {f.status for f in service.ingest([png, pdf]).files} == {"unchanged"}
    # another OCR engine: the OCR'd document is read again, the text-layer one is not
    service.settings.ingest.ocr_engine = "rapidocr-onnxruntime"
    doc = service.get_document(png.name)
    assert ocr_version("rapidocr-onnxruntime") != doc.stages["ocr_words"]
    from ingest.plan import plan_file

    lib = service.ingestor.library
    assert getattr(plan_file(service.settings, lib, png, png.name, "default"), "mode", None) == "full"
    assert getattr(plan_file(service.settings, lib, pdf, pdf.name, "default"), "status", None) == "unchanged"


@pytest.mark.corpus
def test_a_page_whose_ocr_failed_is_recorded_and_retried(tmp_path: Path) -> None:
    """OCR raising inside the reader (as onnxruntime's std::bad_alloc did): the page is not silently wordless —
    the words stage stays pending with the reason, and the next ingest reads the words. The failure is injected
    into the real CLI and its reader processes with a sitecustomize module (spawned readers import it too)."""
    import json

    from tests.ingest.clirun import cli_env, pagelens

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import ingest.ocr\n"
        "def _boom(*args, **kwargs):\n"
        "    raise RuntimeError('std::bad_alloc (injected by the test)')\n"
        "ingest.ocr.ocr_words = _boom\n")
    png = tmp_path / "card.png"
    pymupdf.open(PDFS / "refcard-a4.pdf")[0].get_pixmap(dpi=100).save(png)
    rep = tmp_path / "r.json"
    starved = cli_env(tmp_path / "d", None)
    starved["PYTHONPATH"] = f"{hook}:{starved['PYTHONPATH']}"
    res = pagelens("ingest", str(png), "--report", str(rep), env=starved)
    f = json.loads(rep.read_text())["files"][0]
    assert f["status"] == "ingested" and "words" in f["pending"], res.stderr[-2000:]
    assert f["warnings"] and "OCR failed" in f["warnings"][0] and "Traceback" not in res.stderr
    doc = json.loads(pagelens("docs", "show", png.name, env=starved).stdout)
    assert "words" in doc["pending"] and "words" not in doc["stages"]
    res = pagelens("ingest", str(png), "--report", str(rep), env=cli_env(tmp_path / "d", None))
    f = json.loads(rep.read_text())["files"][0]
    assert f["status"] == "ingested" and "words" not in f["pending"] and not f["warnings"], res.stderr[-2000:]
    doc = json.loads(pagelens("docs", "show", png.name, env=cli_env(tmp_path / "d", None)).stdout)
    assert doc["words_sources"] == {"ocr": 1} and "words" in doc["stages"]


@pytest.mark.corpus
@pytest.mark.parametrize(("runtime", "cap_mb"), [("auto", 1024), ("openvino", 3072)])
def test_ocr_of_an_ordinary_page_fits_its_reader(tmp_path: Path, runtime: str, cap_mb: int) -> None:
    """The reader's cap is on memory in use, not address space: onnxruntime reserves ~1.9 GB of address space
    to OCR a page that needs ~0.6 GB, which an address-space cap of 1 GB turned into std::bad_alloc. Under a 1 GB
    cap ``auto`` runs onnxruntime; OpenVINO, bounded (no kernel cache per shape), fits the default cap of 3 GB
    (unbounded, its 3.5 GB of mappings failed the page's OCR)."""
    import json

    from tests.ingest.clirun import cli_env, pagelens

    png = tmp_path / "card.png"
    pymupdf.open(PDFS / "refcard-a4.pdf")[0].get_pixmap(dpi=100).save(png)
    rep = tmp_path / "r.json"
    env = cli_env(tmp_path / "d", None, PAGELENS_INGEST__WORKER_MEMORY_MB=str(cap_mb),
                  PAGELENS_INGEST__OCR_RUNTIME=runtime)
    res = pagelens("ingest", str(png), "--report", str(rep), env=env)
    report = json.loads(rep.read_text())
    f = report["files"][0]
    assert f["status"] == "ingested" and not f["warnings"] and "words" not in f["pending"], res.stderr[-2000:]
    assert 0 < report["reader_peak_mb"] < cap_mb
    doc = json.loads(pagelens("docs", "show", png.name, env=env).stdout)
    assert doc["words_sources"] == {"ocr": 1}


def test_openvino_reads_the_words_onnxruntime_reads() -> None:
    """The default CPU runtime (OpenVINO on the wheel's ONNX models) gives the words, lines and boxes onnxruntime
    gives; ``auto`` takes it unless a GPU or the reader's memory cap says otherwise."""
    from ingest import ocr

    image = _invoice_scan()
    ov, ort = ocr_words(image, runtime="openvino"), ocr_words(image, runtime="onnxruntime")
    assert ov.texts == ort.texts and len(ov) >= 12
    assert list(ov.lines) == list(ort.lines)
    np.testing.assert_allclose(ov.boxes, ort.boxes, atol=0.005)
    if not ocr._cuda():
        assert ocr.runtime_of("auto") == "openvino"
    assert ocr.runtime_for("auto", 1024) == "onnxruntime" and ocr.runtime_for("auto", 3072) == "auto"
    assert ocr.runtime_for("openvino", 1024) == "openvino"
    with pytest.raises(ValueError, match="unknown OCR runtime"):
        ocr.runtime_of("tensorrt")


def test_an_ocr_engine_that_is_not_installed_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ingest import ocr

    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails as if not installed
    ocr._engine.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"rapidocr-onnxruntime is not installed.*OCR_ENGINE=rapidocr"):
            ocr._engine("rapidocr-onnxruntime", 1)
        with pytest.raises(ValueError, match="unknown OCR engine"):
            ocr._engine("tesseract", 1)
    finally:
        ocr._engine.cache_clear()
    assert ocr.ocr_version("rapidocr") != ocr.ocr_version("rapidocr-onnxruntime")
    assert ocr.ocr_threads(1) >= 1 and ocr.ocr_threads(10_000) == 1
