"""``pagelens extract --each``: one extraction per document, several in flight, resumable, failures recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf

from app.batch import extract_each
from app.service import Service
from tests.conftest import make_settings
from tests.ingest.clirun import cli_env, pagelens, popen
from tests.vlm.chat_server import Gauge, chat_server, ok

SCHEMA = {"type": "object", "properties": {"invoice_number": {"type": "string"}, "date": {"type": "string"},
                                           "total": {"type": "number"}}}


def _invoice(path: Path, i: int, pages: int = 1) -> Path:
    doc = pymupdf.open()
    page = doc.new_page()
    for j, line in enumerate([f"Vendor {i} Ltd", f"Invoice number: INV-{100 + i}", f"Date: 2024-03-0{i % 9 + 1}",
                              f"Total: {10 * i + 9}.50"]):
        page.insert_text((72, 72 + 20 * j), line, fontsize=11)
    for _ in range(pages - 1):
        doc.new_page().insert_text((72, 72), "terms and conditions", fontsize=11)
    doc.save(str(path))
    return path


def _extractions(data: Path) -> int:
    svc = Service(make_settings(data, None))
    try:
        with svc.catalog.engine.connect() as c:
            return int(c.exec_driver_sql("select count(*) from extractions").scalar_one())
    finally:
        svc.close()


def test_extract_each_resumes_and_records_failures(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        _invoice(folder / f"inv{i}.pdf", i)
    _invoice(folder / "long.pdf", 7, pages=10)  # over --max-pages 8: read field by field
    (folder / "broken.pdf").write_bytes(b"not a pdf " * 50)  # fails at ingest
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    env = cli_env(tmp_path / "data", None, PAGELENS_VLM__BACKEND="words")
    args = ["extract", "--schema", str(tmp_path / "s.json"), "--each", str(folder)]
    first = pagelens(*args, "--out", str(tmp_path / "r.jsonl"), "--csv", str(tmp_path / "r.csv"), env=env)
    assert first.returncode == 1, first.stderr  # some document failed
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    by = {Path(r["path"]).name: r for r in lines}
    assert {n: r["status"] for n, r in by.items()} == {"inv0.pdf": "extracted", "inv1.pdf": "extracted",
                                                       "inv2.pdf": "extracted", "long.pdf": "extracted",
                                                       "broken.pdf": "failed"}
    assert by["inv1.pdf"]["data"] == {"invoice_number": "INV-101", "date": "2024-03-02", "total": 19.5}
    assert all(f["status"] == "verified" and f["boxes"] for f in by["inv1.pdf"]["fields"])
    assert by["long.pdf"]["data"]["invoice_number"] == "INV-107"
    assert by["broken.pdf"]["error"]["code"] == "invalid_pdf"
    csv_rows = (tmp_path / "r.csv").read_text().splitlines()
    assert csv_rows[0] == "path,doc_id,status,error,invoice_number,date,total" and len(csv_rows) == 6
    assert _extractions(tmp_path / "data") == 4

    _invoice(folder / "inv3.pdf", 3)  # a new document: only it is extracted on the next run
    again = pagelens(*args, "--out", str(tmp_path / "r2.jsonl"), env=env)
    assert "1 extracted, 4 already done" in again.stdout, again.stdout
    statuses = {Path(r["path"]).name: r["status"]
                for r in map(json.loads, (tmp_path / "r2.jsonl").read_text().splitlines())}
    assert statuses["inv3.pdf"] == "extracted" and statuses["inv0.pdf"] == "skipped"
    assert _extractions(tmp_path / "data") == 5
    skipped = next(r for r in map(json.loads, (tmp_path / "r2.jsonl").read_text().splitlines())
                   if Path(r["path"]).name == "inv0.pdf")
    assert skipped["data"] == by["inv0.pdf"]["data"], "a skipped document still reports its stored result"


def _stored_count(data: Path) -> int:
    """Extractions stored so far, read while another process writes (SQLite, read-only)."""
    import sqlite3

    db = data / "catalog.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("select count(*) from extractions").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
    finally:
        con.close()


def test_fifty_invoices_two_broken_killed_midway_then_resumed(tmp_path: Path) -> None:
    """48 invoices and 2 broken files; the batch is killed with SIGKILL mid-way, then run again: 48 results and 2
    recorded failures, every invoice's values right and verified, and one stored extraction per invoice."""
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(48):
        _invoice(folder / f"inv{i:02d}.pdf", i)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 garbage " * 40)
    (folder / "truncated.pdf").write_bytes(_invoice(tmp_path / "whole.pdf", 99).read_bytes()[:300])
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    data = tmp_path / "data"
    env = cli_env(data, None, PAGELENS_VLM__BACKEND="words", PAGELENS_VLM__WORDS_LATENCY_S="0.25",
                  PAGELENS_VLM__CONCURRENCY="4")
    args = ["extract", "--schema", str(tmp_path / "s.json"), "--each", str(folder)]

    proc = popen(*args, "--out", str(tmp_path / "first.jsonl"), env=env)
    deadline = time.monotonic() + 300
    while _stored_count(data) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no clean-up of any kind
    proc.communicate()
    stored = _stored_count(data)
    assert 8 <= stored < 48, f"the kill came mid-batch ({stored} stored)"

    again = pagelens(*args, "--out", str(tmp_path / "r.jsonl"), env=env)
    assert again.returncode == 1, again.stderr  # the two broken files
    results = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    by = {Path(r["path"]).name: r for r in results}
    assert len(results) == 50 and len(by) == 50
    assert {n for n, r in by.items() if r["status"] == "failed"} == {"broken.pdf", "truncated.pdf"}
    assert sum(r["status"] == "skipped" for r in results) == stored  # what was stored before the kill is kept
    assert f"{48 - sum(r['status'] == 'skipped' for r in results)} extracted" in again.stdout
    for i in range(48):
        r = by[f"inv{i:02d}.pdf"]
        assert r["status"] in ("extracted", "skipped")
        assert r["data"] == {"invoice_number": f"INV-{100 + i}", "date": f"2024-03-0{i % 9 + 1}",
                             "total": 10 * i + 9.5}, r
        assert all(f["status"] == "verified" for f in r["fields"])
    assert _extractions(data) == 48, "one extraction per invoice: nothing extracted twice"


def test_extract_each_keeps_concurrency_requests_in_flight(tmp_path: Path) -> None:
    gauge = Gauge(0.3, ok(json.dumps({k: {"value": "x" if k != "total" else 1.0, "page": 1, "bbox_2d": None}
                                      for k in SCHEMA["properties"]})))

    with chat_server() as srv:
        s = make_settings(tmp_path / "data", None)
        s.vlm_url, s.vlm.concurrency = srv.url, 3
        srv.script = [gauge] * 7
        svc = Service(s)
        try:
            report = svc.ingest([_invoice(tmp_path / f"inv{i}.pdf", i) for i in range(7)])
            docs = [(f.doc_id or "", f.path) for f in report.files]
            svc.files.path_of(docs[5][0]).unlink()  # one document's stored file is gone: it fails, the rest go on
            results = extract_each(svc, SCHEMA, docs)
        finally:
            svc.close()
    assert [r.status for r in results] == ["extracted"] * 5 + ["failed", "extracted"]
    assert results[5].error is not None and results[5].error["code"] == "not_found"
    # the server names its model differently from the setting: a re-run still recognises what is done
    assert {r.data and "x" for r in results if r.status == "extracted"} == {"x"}
    svc = Service(s)
    try:
        again = extract_each(svc, SCHEMA, [d for i, d in enumerate(docs) if i != 5])
    finally:
        svc.close()
    assert [r.status for r in again] == ["skipped"] * 6 and gauge.peak == 3
    assert [r.doc_id for r in results] == [d for d, _ in docs], "results in the order of the documents"
    assert gauge.peak == 3, gauge
