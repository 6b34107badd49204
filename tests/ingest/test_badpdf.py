"""The whole of ../shared/corpus/badpdf in one batch through the real CLI: every file ends as its manifest
class asks, nothing crashes or hangs, memory stays bounded, and the good files are searchable."""

from __future__ import annotations

import json
import resource
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
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    assert peak_gb < 2.5, f"a process of the batch peaked at {peak_gb:.2f} GB"


def test_time_limit_and_memory_cap_cost_only_their_file(tmp_path: Path) -> None:
    """A file that exceeds the per-file time limit is stopped and recorded; the others are ingested."""
    env = cli_env(tmp_path / "d", None, PAGELENS_INGEST__FILE_TIMEOUT_S="1.5")
    slow = tmp_path / "slow-scan.pdf"
    import pymupdf

    src = pymupdf.open(PDFS / "R-intro.pdf")
    doc = pymupdf.open()
    for i in range(8):  # eight image-only pages: OCR takes well over 1.5 s
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
