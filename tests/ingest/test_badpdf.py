"""The whole of ../shared/corpus/badpdf in one batch through the real CLI: every file ends as its manifest
class asks, nothing crashes or hangs, memory stays bounded, and the good files are searchable."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from app.service import Service
from tests.conftest import BADPDF, PDFS, make_settings
from tests.ingest.clirun import cli_env, pagelens

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def _manifest() -> dict[str, dict]:
    return {str(BADPDF / r["path"]): r for r in map(json.loads, (BADPDF / "manifest.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_siglip: Path) -> tuple[dict, dict[str, str], Path]:
    data = tmp_path_factory.mktemp("badpdf-data")
    env = cli_env(data, str(tiny_siglip))
    rep = data / "report.json"
    res = pagelens("ingest", str(BADPDF), "--report", str(rep), "--workers", "2", env=env)
    assert res.returncode == 1, f"some files fail, so the exit code is 1: {res.stderr[-2000:]}"
    assert "Traceback" not in res.stderr + res.stdout
    return json.loads(rep.read_text()), env, data


def test_every_file_has_its_expected_outcome(batch: tuple[dict, dict[str, str], Path]) -> None:
    report, _, _ = batch
    manifest = _manifest()
    outcomes = {f["path"]: f for f in report["files"]}
    assert set(manifest) <= set(outcomes), "every file in the folder gets an entry"
    assert outcomes[str(BADPDF / "manifest.jsonl")]["error"]["code"] == "unsupported_type"
    seen: dict[str, set[str]] = defaultdict(set)
    for path, row in manifest.items():
        f, cls = outcomes[path], row["class"]
        code = (f["error"] or {}).get("code", "")
        seen[cls].add(f"{f['status']}:{code}")
        if f["status"] == "failed":
            assert f["error"]["message"] and f["doc_id"], path
        if cls == "unreadable_by_all":
            assert (f["status"], code) == ("failed", "invalid_pdf"), path
        elif cls == "zero_pages":
            assert (f["status"], code) == ("failed", "empty_document"), path
        elif cls == "encrypted_password_required":
            assert f["status"] == "failed" and code == "password_required", path
            assert "--password" in f["error"]["message"]
        elif cls in ("readable", "encrypted_opens_without_password", "damaged_but_recoverable"):
            assert f["status"] in ("ingested", "unchanged") and f["pages"] >= 1, (path, f)
        elif cls == "parser_disagreement":
            assert f["status"] != "failed" or code in ("invalid_pdf", "empty_document"), (path, f)
        else:
            pytest.fail(f"unknown class {cls}")
    assert seen["readable"] == {"ingested:"}


def test_scanned_pages_were_ocred_and_are_searchable(batch: tuple[dict, dict[str, str], Path],
                                                     tiny_siglip: Path) -> None:
    _, _, data = batch
    svc = Service(make_settings(data, str(tiny_siglip)))
    try:
        docs = {d.name: d for d in svc.list_documents()}
        scanned = [p for p, r in _manifest().items()
                   if r["class"] == "readable" and "image_only_first_page" in r["tags"]]
        with_ocr = [p for p in scanned if docs[p].words_sources.get("ocr")]
        assert len(with_ocr) >= len(scanned) - 2, "OCR must find the words of the scanned pages"
        for word, name in [("Covfefe", "acroform.pdf"), ("LinnSequencer", "skew.pdf"), ("circle", "aspect.pdf")]:
            hits = svc.search(word, k=10)
            assert any(h.path.endswith(name) for h in hits), (word, [h.path for h in hits])
            hit = next(h for h in hits if h.path.endswith(name))
            assert any(w.text.lower().startswith(word.lower()) for w in hit.words)
    finally:
        svc.close()


def test_passwords_open_the_encrypted_files(batch: tuple[dict, dict[str, str], Path], tiny_siglip: Path) -> None:
    _, _, data = batch
    by_password: dict[str, list[Path]] = defaultdict(list)
    for path, row in _manifest().items():
        if row["class"] == "encrypted_password_required" and row.get("password"):
            by_password[row["password"]].append(Path(path))
    assert len(by_password) >= 5
    svc = Service(make_settings(data, str(tiny_siglip)))
    try:
        for password, paths in by_password.items():
            report = svc.ingest(paths, password=password)
            assert [f.status for f in report.files if f.status == "failed"] == [], (password, report.files)
            assert all(f.pages >= 1 for f in report.files)
    finally:
        svc.close()


def test_memory_stayed_bounded(batch: tuple[dict, dict[str, str], Path]) -> None:
    # the readers' own peaks, reported by them (not RUSAGE_CHILDREN, which covers every child this test process
    # ever had, so it depended on which tests ran before)
    peak_gb = batch[0]["reader_peak_mb"] / 1024
    assert 0 < peak_gb < 2.5, f"a reader of the batch peaked at {peak_gb:.2f} GB"


def test_time_limit_and_memory_cap_cost_only_their_file(tmp_path: Path) -> None:
    """A file that exceeds the per-file time limit is stopped and recorded; the others are ingested (their
    clock does not include the replacement reader's start-up)."""
    env = cli_env(tmp_path / "d", None, PAGELENS_INGEST__FILE_TIMEOUT_S="3")
    slow = tmp_path / "slow-scan.pdf"
    import pymupdf

    src = pymupdf.open(PDFS / "R-intro.pdf")
    doc = pymupdf.open()
    for i in range(12):  # twelve image-only pages: OCR takes well over 3 s (1.5-3 s a page)
        p = doc.new_page(width=src[i].rect.width, height=src[i].rect.height)
        p.insert_image(p.rect, stream=src[i].get_pixmap(dpi=100).tobytes("png"))
    doc.save(slow)
    rep = tmp_path / "r.json"
    res = pagelens("ingest", str(slow), str(PDFS / "refcard-a4.pdf"), "--report", str(rep), env=env)
    assert res.returncode == 1
    files = {Path(f["path"]).name: f for f in json.loads(rep.read_text())["files"]}
    assert files["slow-scan.pdf"]["status"] == "failed" and files["slow-scan.pdf"]["error"]["code"] == "timeout"
    assert files["refcard-a4.pdf"]["status"] == "ingested"
    listed = json.loads(pagelens("docs", "list", "--json", env=env).stdout)
    assert [Path(d["name"]).name for d in listed] == ["refcard-a4.pdf"], "nothing of the stopped file is kept"


def _bomb_pdf(path: Path, side: int = 20000) -> None:
    """A one-page PDF whose image XObject inflates to side*side*3 bytes (1.2 GB) from ~1 MB of Flate data,
    written in a streaming way so the test itself stays small."""
    import zlib

    comp = zlib.compressobj(9)
    row = b"\xff" * (side * 3)
    data = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im0 4 0 R >> >> "
            b"/Contents 5 0 R >>",
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 "
            b"/Filter /FlateDecode /Length %d >>\nstream\n" % (side, side, len(data)) + data + b"\nendstream",
            b"<< /Length 33 >>\nstream\nq 612 0 0 792 0 0 cm /Im0 Do Q\nendstream"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    path.write_bytes(bytes(out))


def test_decompression_bomb_hits_the_memory_cap_not_the_machine(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pdf"
    _bomb_pdf(bomb)
    assert bomb.stat().st_size < 3_000_000
    # the page has no text, only the image: the reader renders it for OCR, which decodes the image
    env = cli_env(tmp_path / "d", None, PAGELENS_INGEST__WORKER_MEMORY_MB="1024")
    rep = tmp_path / "r.json"
    res = pagelens("ingest", str(bomb), str(PDFS / "refcard-a4.pdf"), "--report", str(rep), env=env, timeout=300)
    files = {Path(f["path"]).name: f for f in json.loads(rep.read_text())["files"]}
    assert files["refcard-a4.pdf"]["status"] == "ingested", res.stderr[-2000:]
    # MuPDF either refuses the allocation (the page has no image, the rest is kept) or the reader dies at its cap;
    # either way this process and the other file are unharmed and memory stayed bounded.
    assert files["bomb.pdf"]["status"] in ("ingested", "failed")
    peak_gb = json.loads(rep.read_text())["reader_peak_mb"] / 1024  # readers stopped at the cap report nothing
    assert 0 < peak_gb < 1.5, f"a reader peaked at {peak_gb:.2f} GB despite the 1 GB cap"
