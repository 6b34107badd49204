"""Jobs in the API: uploads and batch extractions answer 202 with a job to poll; progress moves; cancel stops at a
file or page batch and leaves no partial document; a delete gets in between an upload's page batches; a job a
killed server left running is resumed by the next one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pymupdf
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.service import Service
from store.catalog import Catalog
from tests.conftest import PDFS, ROOT, make_settings

pytestmark = pytest.mark.corpus
SCHEMA = {"type": "object", "properties": {"invoice_number": {"type": "string"}, "total": {"type": "number"}}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path / "data", None, batch_pages=8))) as c:
        yield c


def _svc(c: TestClient) -> Service:
    svc: Service = c.app.state.service  # type: ignore[attr-defined]
    return svc


def _big_pdf(path: Path, tag: str) -> Path:
    """R-intro's 113 pages plus a page naming ``tag`` (distinct bytes: its own document)."""
    doc = pymupdf.open()
    with pymupdf.open(PDFS / "R-intro.pdf") as src:
        doc.insert_pdf(src)
    doc.new_page().insert_text((72, 72), f"copy {tag}")
    doc.save(str(path))
    doc.close()
    return path


def _invoice(path: Path, i: int) -> Path:
    doc = pymupdf.open()
    page = doc.new_page()
    for j, line in enumerate([f"Invoice number: INV-{100 + i}", f"Total: {10 * i + 9}.50"]):
        page.insert_text((72, 72 + 20 * j), line, fontsize=11)
    doc.save(str(path))
    doc.close()
    return path


def _post(c: TestClient, *paths: Path, wait: bool = False) -> httpx.Response:
    return c.post("/documents", params={"wait": "true"} if wait else {},
                  files=[("files", (p.name, p.read_bytes(), "application/pdf")) for p in paths])


def _poll(c: TestClient, job_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = 120,
          seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = c.get(f"/jobs/{job_id}").json()
        if seen is not None:
            seen.append(job)
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} never got there: {job}"
        time.sleep(0.01)


def _removed(path: Path, timeout_s: float = 10) -> bool:
    """Whether ``path`` is gone within ``timeout_s``: the runner records a job's end, then removes its uploads (so a
    crash between the two loses nothing: the next start sweeps the ended job's files), and a poll can land between."""
    deadline = time.monotonic() + timeout_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not path.exists()


def _ended(job: dict[str, Any]) -> bool:
    return job["state"] in ("done", "failed", "cancelled")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _consistent(svc: Service) -> list[str]:
    """The documents, after checking that none is partial and the stores agree (vectors, stored files)."""
    docs = svc.list_documents()
    assert all(d.status == "complete" for d in docs), [(d.name, d.status) for d in docs]
    assert svc.catalog.partial_documents() == []
    assert svc.index.count() == sum(d.page_count for d in docs)
    assert svc.files.doc_ids() == {d.doc_id for d in docs}
    return sorted(d.doc_id for d in docs)


def test_upload_answers_202_and_the_job_reports_progress_and_the_result(client: TestClient, tmp_path: Path) -> None:
    big = _big_pdf(tmp_path / "big.pdf", "a")
    r = _post(client, PDFS / "refcard-a4.pdf", big)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/jobs/{job['job_id']}"
    assert job["state"] in ("queued", "running") and job["kind"] == "ingest"
    assert job["params"]["files"] == ["refcard-a4.pdf", "big.pdf"]
    seen: list[dict[str, Any]] = []
    done = _poll(client, job["job_id"], _ended, seen=seen)
    assert done["state"] == "done", done
    assert done["progress"]["files_done"] == done["progress"]["files_total"] == 2
    assert done["progress"]["pages_done"] == done["progress"]["pages_total"] == 3 + 114
    running = [j["progress"]["pages_done"] for j in seen if j["state"] == "running"]
    assert len(set(running)) >= 2 and running == sorted(running), running  # it moved, forward
    assert [(f["path"], f["status"], f["pages"]) for f in done["result"]["files"]] == [
        ("refcard-a4.pdf", "ingested", 3), ("big.pdf", "ingested", 114)]
    assert done["errors"] == [] and done["started_at"] and done["finished_at"]
    assert _consistent(_svc(client)) == sorted([_sha(PDFS / "refcard-a4.pdf"), _sha(big)])
    assert _removed(_svc(client).job_dir(job["job_id"]))  # its files are in the store now
    listed = client.get("/jobs", params={"state": "done"}).json()
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    assert client.get("/jobs", params={"state": "running"}).json() == []


def test_per_file_errors_and_bad_job_ids(client: TestClient, tmp_path: Path) -> None:
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"not a pdf " * 50)
    job = _post(client, bad, PDFS / "refcard-a4.pdf").json()
    done = _poll(client, job["job_id"], _ended)
    assert done["state"] == "done"
    assert [(e["path"], e["code"]) for e in done["errors"]] == [("broken.pdf", "invalid_pdf")]
    for method in (client.get, client.delete):
        r = method("/jobs/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert "GET /jobs" in r.json()["error"]["message"]
    r = client.delete(f"/jobs/{job['job_id']}")
    assert r.status_code == 409 and "already ended (done)" in r.json()["error"]["message"]
    assert client.get("/jobs", params={"state": "bogus"}).status_code == 422


def test_cancel_a_queued_and_a_running_job(client: TestClient, tmp_path: Path) -> None:
    bigs = [_big_pdf(tmp_path / f"big{i}.pdf", str(i)) for i in range(3)]
    running = _post(client, PDFS / "refcard-a4.pdf", *bigs).json()
    queued = _post(client, PDFS / "R-data.pdf").json()
    r = client.delete(f"/jobs/{queued['job_id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled" and r.json()["cancel_requested"]
    assert not _svc(client).job_dir(queued["job_id"]).exists()
    at = _poll(client, running["job_id"], lambda j: j["progress"]["files_done"] >= 1 or _ended(j))
    assert at["state"] == "running", at
    r = client.delete(f"/jobs/{running['job_id']}")
    assert r.status_code == 200 and r.json()["cancel_requested"]
    ended = _poll(client, running["job_id"], _ended)
    assert ended["state"] == "cancelled", ended
    assert 1 <= ended["progress"]["files_done"] < 4
    docs = _consistent(_svc(client))  # finished files stay, the half-read one is gone, nothing partial
    assert _sha(PDFS / "refcard-a4.pdf") in docs and len(docs) == ended["progress"]["files_done"]
    assert _sha(PDFS / "R-data.pdf") not in docs  # the queued job never ran
    assert client.get(f"/jobs/{queued['job_id']}").json()["started_at"] is None
    again = _post(client, PDFS / "refcard-a4.pdf", *bigs, wait=True)  # a re-upload does the rest
    # what finished before the cancel is unchanged, the rest ingested now (readers work in parallel: which files
    # finished first is not fixed)
    assert [f["status"] for f in again.json()["files"]] == [
        "unchanged" if _sha(f) in docs else "ingested" for f in (PDFS / "refcard-a4.pdf", *bigs)]
    assert len(_consistent(_svc(client))) == 4


def test_a_delete_gets_in_between_an_uploads_page_batches(client: TestClient, tmp_path: Path) -> None:
    other = _post(client, PDFS / "refcard-a4.pdf", wait=True).json()["files"][0]["doc_id"]
    first, *rest = [_big_pdf(tmp_path / f"b{i}.pdf", str(i)) for i in range(3)]
    job = _post(client, first, *rest).json()  # ingested whole under one lock, it would hold a delete ~2 s here
    _poll(client, job["job_id"], lambda j: j["progress"]["pages_done"] > 0 or _ended(j))
    t0 = time.perf_counter()
    r = client.delete(f"/documents/{other}")
    took = time.perf_counter() - t0
    state = client.get(f"/jobs/{job['job_id']}").json()
    assert r.status_code == 200 and took < 1.0, took
    assert state["state"] == "running" and state["progress"]["pages_done"] < 3 * 114  # the upload was under way
    # deleting a document the job is writing waits until the job ends, then removes all of it
    _poll(client, job["job_id"], lambda j: j["progress"]["files_done"] >= 1 or _ended(j))
    answer: dict[str, httpx.Response] = {}
    deleter = threading.Thread(target=lambda: answer.setdefault("r", client.delete(f"/documents/{_sha(first)}")))
    deleter.start()
    done = _poll(client, job["job_id"], _ended)
    deleter.join(60)
    assert done["state"] == "done" and [f["status"] for f in done["result"]["files"]] == ["ingested"] * 3
    assert answer["r"].status_code == 200
    assert _consistent(_svc(client)) == sorted(_sha(f) for f in rest)


def test_extraction_job_runs_each_document_and_resumes(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None, vlm_backend="words")
    with TestClient(create_app(s)) as c:
        files = [_invoice(tmp_path / f"inv{i}.pdf", i) for i in range(3)]
        ids = [f["doc_id"] for f in _post(c, *files, wait=True).json()["files"]]
        r = c.post("/extract/jobs", json={"schema": SCHEMA})
        assert r.status_code == 202 and r.headers["location"] == f"/jobs/{r.json()['job_id']}"
        done = _poll(c, r.json()["job_id"], _ended)
        assert done["state"] == "done" and done["kind"] == "extract"
        assert done["progress"] == {"files_done": 3, "files_total": 3, "pages_done": 3, "pages_total": 3,
                                    "current": None, "work_done": None}
        by = {x["doc_id"]: x for x in done["result"]}
        assert [by[d]["status"] for d in ids] == ["extracted"] * 3
        assert by[ids[1]]["data"] == {"invoice_number": "INV-101", "total": 19.5}
        again = c.post("/extract/jobs", json={"schema": SCHEMA, "doc_ids": ["inv1.pdf"]}).json()
        done = _poll(c, again["job_id"], _ended)
        assert [(x["doc_id"], x["status"]) for x in done["result"]] == [(ids[1], "skipped")]
        assert c.post("/extract/jobs", json={"schema": SCHEMA, "doc_ids": ["nope.pdf"]}).status_code == 404
        bad = c.post("/extract/jobs", json={"schema": {"type": "array"}})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"


def test_extraction_job_without_vlm_is_503_at_once(client: TestClient) -> None:
    _post(client, PDFS / "refcard-a4.pdf", wait=True)
    r = client.post("/extract/jobs", json={"schema": SCHEMA})
    assert r.status_code == 503 and "PAGELENS_VLM_URL" in r.json()["error"]["message"]
    assert client.get("/jobs", params={"state": "queued"}).json() == []


KILLED_SERVER = """
import sys, time
from pathlib import Path
from fastapi.testclient import TestClient
from app.api import create_app
from tests.conftest import make_settings
c = TestClient(create_app(make_settings(Path(sys.argv[1]), None, batch_pages=8, workers=1)))
files = [("files", (Path(p).name, Path(p).read_bytes(), "application/pdf")) for p in sys.argv[2:]]
job = c.post("/documents", files=files).json()["job_id"]
while c.get(f"/jobs/{job}").json()["progress"]["pages_done"] < 8:
    time.sleep(0.01)
print(job, flush=True)
time.sleep(600)
"""


def test_a_job_left_running_by_a_killed_server_is_resumed(tmp_path: Path) -> None:
    files = [PDFS / "refcard-a4.pdf", _big_pdf(tmp_path / "b1.pdf", "1"), _big_pdf(tmp_path / "b2.pdf", "2")]
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SERVER, str(data), *map(str, files)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        job_id = proc.stdout.readline().strip()
        assert job_id, "the server to kill did not start its job"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    s = make_settings(data, None, batch_pages=8, workers=1)
    cat = Catalog(s.catalog_url)
    assert cat.get_job(job_id).state == "running"  # as the killed server left it
    cat.close()
    with TestClient(create_app(s)) as c:
        done = _poll(c, job_id, _ended)
        assert done["state"] == "done", done
        # what the killed server finished is unchanged (one reader: refcard's pages and its end came before b1's
        # first 8 pages, when the server was killed)
        statuses = [f["status"] for f in done["result"]["files"]]
        assert statuses in (["unchanged", "ingested", "ingested"], ["unchanged", "unchanged", "ingested"])
        assert _consistent(_svc(c)) == sorted(_sha(f) for f in files)
        assert _removed(_svc(c).job_dir(job_id))


def test_cli_lists_the_jobs(tmp_path: Path) -> None:
    from tests.ingest.clirun import cli_env, pagelens

    env = cli_env(tmp_path / "d", None)
    svc = Service(make_settings(tmp_path / "d", None))
    svc.catalog.add_job("a" * 32, "ingest", {"files": ["x.pdf"], "collection": None})
    svc.catalog.add_job("b" * 32, "extract", {"schema": SCHEMA, "docs": [], "max_pages": 8})
    svc.catalog.cancel_job("b" * 32)
    svc.close()
    listed = json.loads(pagelens("jobs", "--json", env=env).stdout)
    assert [(j["job_id"], j["state"]) for j in listed] == [("b" * 32, "cancelled"), ("a" * 32, "queued")]
    queued = json.loads(pagelens("jobs", "--state", "queued", "--json", env=env).stdout)
    assert [j["job_id"] for j in queued] == ["a" * 32]
    assert "2 jobs" in pagelens("jobs", env=env).stdout
    bad = pagelens("jobs", "--state", "bogus", env=env)
    assert bad.returncode == 2 and "queued, running" in bad.stderr


def test_the_start_sweeps_ended_and_abandoned_upload_folders_but_not_one_being_saved(tmp_path: Path) -> None:
    """Another process on the same data dir may be saving an upload whose job it has not recorded yet: that folder
    is left alone; one nobody touched for the grace period (a process killed mid-upload) and an ended job's go."""
    from app.jobs import UNRECORDED_GRACE_S

    s = make_settings(tmp_path / "data", None)
    jobs = s.data_dir / "jobs"
    saving, abandoned, ended = jobs / ("a" * 32), jobs / ("b" * 32), jobs / ("c" * 32)
    for d in (saving, abandoned, ended):
        (d / "0000").mkdir(parents=True)
        (d / "0000" / "x.pdf").write_bytes(b"%PDF-1.4")
    old = time.time() - UNRECORDED_GRACE_S - 60
    for p in (abandoned, abandoned / "0000", abandoned / "0000" / "x.pdf"):
        os.utime(p, (old, old))
    cat = Catalog(s.catalog_url)
    cat.add_job("c" * 32, "ingest", {"files": ["x.pdf"], "collection": None})
    cat.cancel_job("c" * 32)
    cat.close()
    with TestClient(create_app(s)):
        assert saving.is_dir() and not abandoned.exists() and not ended.exists()
