"""One owner per data dir: a process refused the data dir never touches a file of the stores another one holds,
and the holder goes on working (issue 17, item 1)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas.errors import StoreLocked
from store.owner import LOCK_FILE, RECORD_FILE, DataDirOwner, held_by_other, running_server
from tests.conftest import ROOT
from tests.ingest.clirun import cli_env, pagelens
from tests.serving import answers, text_pdf, wait_until
from tests.vlm.chat_server import free_port

# A server over a data dir that records nothing about itself (as an older PageLens, or an app embedding
# create_app, would): every other process on that data dir is refused, not redirected.
EMBEDDED_SERVER = """
import sys
from pathlib import Path
import uvicorn
from app.api import create_app
from tests.conftest import make_settings
uvicorn.run(create_app(make_settings(Path(sys.argv[1]), None, workers=1)), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


def _pdf(path: Path, text: str) -> Path:
    return text_pdf(path, [f"{text} page {i + 1} quarterly data report" for i in range(3)])


def _snapshot(data: Path) -> dict[str, str]:
    """sha256 of every file under the data dir but the lock file (which only its holder writes)."""
    return {str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data, port = tmp_path / "data", free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", EMBEDDED_SERVER, str(data), str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(answers(f"{url}/health"), proc, "the server")
        yield url, data
    finally:
        proc.terminate()
        proc.wait(20)


def _upload(url: str, path: Path) -> dict:
    with path.open("rb") as f:
        r = httpx.post(f"{url}/documents?wait=true", files={"files": (path.name, f, "application/pdf")}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_refused_commands_leave_the_servers_store_byte_identical_and_working(
        embedded_server: tuple[str, Path], tmp_path: Path) -> None:
    url, data = embedded_server
    first = _upload(url, _pdf(tmp_path / "first.pdf", "alpha"))["files"][0]
    second = _upload(url, _pdf(tmp_path / "second.pdf", "bravo"))["files"][0]
    assert first["status"] == second["status"] == "ingested"
    before = _snapshot(data)
    assert any(k.startswith("qdrant/") for k in before) and "catalog.db" in before
    env = cli_env(data, None, PAGELENS_VLM__CAPTIONS="false")
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"total": {"type": "number"}}}))
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "q1", "question": "alpha", "doc": "first.pdf", "pages": [1]}) + "\n")
    queries = tmp_path / "values.jsonl"
    queries.write_text(json.dumps({"id": "v1", "doc_id": first["doc_id"], "page": 1, "value": "alpha"}) + "\n")
    refused = [
        ("search", "data"), ("search", "--documents", "data"), ("docs", "list"), ("docs", "show", "first.pdf"),
        ("docs", "delete", "first.pdf"), ("ingest", str(_pdf(tmp_path / "third.pdf", "charlie"))),
        ("jobs",), ("locate", "--queries", str(queries)), ("eval", "retrieval", "--gold", str(gold)),
        ("extract", "--schema", str(schema), "--doc", "first.pdf"),
        ("ask", "what is reported?"),
    ]
    for args in refused:
        r = pagelens(*args, env={**env, "PAGELENS_VLM__BACKEND": "words"}, timeout=120)
        assert r.returncode != 0, (args, r.stdout)
        assert "store_locked" in r.stderr and "another PageLens process" in r.stderr, (args, r.stderr)
        assert _snapshot(data) == before, f"`pagelens {' '.join(args)}` changed the store it was refused"
    # the holder is unharmed: deletes, uploads and searches all succeed
    r = httpx.delete(f"{url}/documents/{first['doc_id']}", timeout=60)
    assert r.status_code == 200, r.text
    third = _upload(url, _pdf(tmp_path / "fourth.pdf", "delta"))
    assert third["files"][0]["status"] == "ingested", third
    hits = httpx.post(f"{url}/search", json={"question": "delta quarterly"}, timeout=60).json()
    assert hits and hits[0]["path"] == "fourth.pdf"
    docs = {d["name"]: d["status"] for d in httpx.get(f"{url}/documents", timeout=30).json()}
    assert docs == {"second.pdf": "complete", "fourth.pdf": "complete"}


CLAIM = ("import sys; from pathlib import Path; from store.owner import DataDirOwner; "
         "from schemas.errors import StoreLocked\n"
         "try:\n    DataDirOwner.claim(Path(sys.argv[1])).release(); print('claimed')\n"
         "except StoreLocked as e:\n    print('refused', e)")


def _claim_elsewhere(data: Path) -> str:
    return subprocess.run([sys.executable, "-c", CLAIM, str(data)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60).stdout.strip()


def test_the_claim_excludes_other_processes_until_released_and_is_private(tmp_path: Path) -> None:
    a = DataDirOwner.claim(tmp_path)
    b = DataDirOwner.claim(tmp_path)  # shared within the process (a catalog-only Service beside the UI's)
    refused = _claim_elsewhere(tmp_path)
    assert refused.startswith("refused") and f"process {os.getpid()}" in refused, refused
    assert held_by_other(tmp_path) == os.getpid()
    rec = a.advertise("http://127.0.0.1:1234/")
    assert rec.url == "http://127.0.0.1:1234"
    assert stat.S_IMODE((tmp_path / RECORD_FILE).stat().st_mode) == 0o600, "only the data dir's owner reads it"
    assert stat.S_IMODE((tmp_path / LOCK_FILE).stat().st_mode) == 0o600
    assert running_server(tmp_path) == rec
    assert "http://127.0.0.1:1234" in _claim_elsewhere(tmp_path), "the refusal names the server"
    a.release()
    assert not (tmp_path / RECORD_FILE).exists()
    assert _claim_elsewhere(tmp_path).startswith("refused"), "b still holds it"
    b.release()
    assert held_by_other(tmp_path) is None
    assert _claim_elsewhere(tmp_path) == "claimed"


def test_a_second_edge_handle_in_one_process_is_refused_before_loading(tmp_path: Path) -> None:
    from store.qdrant_edge import EdgeIndex

    ix = EdgeIndex(tmp_path / "q")
    ix.ensure_dense("image", 4)
    ix.flush()
    before = _snapshot(tmp_path)
    with pytest.raises(StoreLocked, match="PAGELENS_QDRANT_URL"):
        EdgeIndex(tmp_path / "q")
    assert _snapshot(tmp_path) == before
    ix.close()
    EdgeIndex(tmp_path / "q").close()


def test_a_record_left_by_a_killed_server_is_ignored(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from store.owner import DataDirOwner; "
            "o = DataDirOwner.claim(Path(sys.argv[1])); o.advertise('http://127.0.0.1:9'); print('ok', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
    rec = running_server(tmp_path)
    assert rec is not None and rec.pid == proc.pid
    with pytest.raises(StoreLocked, match=f"process {proc.pid}.*http://127.0.0.1:9"):
        DataDirOwner.claim(tmp_path)
    proc.kill()
    proc.wait(10)
    assert (tmp_path / RECORD_FILE).exists() and running_server(tmp_path) is None, "a dead server's record"
    DataDirOwner.claim(tmp_path).release()
