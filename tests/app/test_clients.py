"""One owner per data dir, every other shell its client (issue 17, item 2): with ``pagelens serve`` running, the
CLI and the UI on the same data dir run through its API instead of being refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from store.owner import RECORD_FILE, running_server
from tests.conftest import ROOT
from tests.ingest.clirun import cli_env, pagelens
from tests.serving import answers, text_pdf, wait_until
from tests.vlm.chat_server import free_port

VIA = "via the PageLens server at"


def _pdf(path: Path, text: str, pages: int = 2) -> Path:
    return text_pdf(path, [f"{text} page {i + 1} Total: 1,234.56" for i in range(pages)])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``pagelens serve`` on a fresh data dir (with the offline ``words`` VLM), as a user starts it."""
    data, port = tmp_path / "data", free_port()
    env = cli_env(data, None, PAGELENS_VLM__CAPTIONS="false", PAGELENS_VLM__BACKEND="words",
                  PAGELENS_API_KEY="the-admin-key")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: running_server(data) is not None and answers(f"{url}/health")(), proc, "pagelens serve")
        yield url, env
    finally:
        proc.terminate()
        proc.wait(20)
    assert not (data / RECORD_FILE).exists(), "a stopped server withdraws its record"


def test_every_cli_command_runs_through_the_server_that_owns_the_data_dir(
        server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, env = server
    shell = {k: v for k, v in env.items() if k != "PAGELENS_API_KEY"}  # the shell knows no key: the record has one
    r = pagelens("ingest", str(_pdf(tmp_path / "alpha.pdf", "alpha invoice")),
                 str(_pdf(tmp_path / "beta.pdf", "beta statement")), "--report", str(tmp_path / "r.json"), env=shell)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(VIA) == 1 and url in r.stderr, "says once where it runs"
    report = json.loads((tmp_path / "r.json").read_text())
    assert [f["status"] for f in report["files"]] == ["ingested", "ingested"]
    # the server holds them: its own API lists them
    listed = httpx.get(f"{url}/documents", headers={"X-API-Key": "the-admin-key"}).json()
    assert sorted(d["name"] for d in listed) == ["alpha.pdf", "beta.pdf"]

    docs = json.loads(pagelens("docs", "list", "--json", env=shell).stdout)
    assert sorted(d["name"] for d in docs) == ["alpha.pdf", "beta.pdf"]
    alpha = next(d for d in docs if d["name"] == "alpha.pdf")
    assert json.loads(pagelens("docs", "show", alpha["doc_id"][:8], env=shell).stdout)["name"] == "alpha.pdf"
    hits = json.loads(pagelens("search", "beta statement", "--json", env=shell).stdout)
    assert hits[0]["path"] == "beta.pdf"
    ranked = json.loads(pagelens("search", "--documents", "alpha invoice", "--json", env=shell).stdout)
    assert ranked[0]["name"] == "alpha.pdf"
    q = tmp_path / "v.jsonl"
    q.write_text(json.dumps({"id": "t", "doc_id": "alpha.pdf", "page": 2, "value": "1,234.56"}) + "\n")
    located = json.loads(pagelens("locate", "--queries", str(q), env=shell).stdout)
    assert located["status"] == "verified" and located["bbox"] is not None
    gold = tmp_path / "g.jsonl"
    gold.write_text(json.dumps({"id": "g", "question": "beta statement", "doc": "beta.pdf", "pages": [1, 2]}) + "\n")
    ev = pagelens("eval", "retrieval", "--gold", str(gold), "--out", str(tmp_path / "e.json"), env=shell)
    assert ev.returncode == 0, ev.stderr
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["hit@5"] == 1.0
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"total": {"type": "number"}}}))
    ex = pagelens("extract", "--schema", str(schema), "--doc", "alpha.pdf", "--json", env=shell)
    assert ex.returncode == 0, ex.stderr
    assert json.loads(ex.stdout)["model"], "extracted by the server's VLM"
    each = pagelens("extract", "--schema", str(schema), "--each", "--doc", "alpha.pdf", "--doc", "beta.pdf",
                    "--out", str(tmp_path / "each.jsonl"), env=shell)
    assert each.returncode == 0, each.stderr
    lines = [json.loads(x) for x in (tmp_path / "each.jsonl").read_text().splitlines()]
    assert sorted(x["path"] for x in lines) == ["alpha.pdf", "beta.pdf"]
    jobs = json.loads(pagelens("jobs", "--json", env=shell).stdout)
    assert {j["kind"] for j in jobs} == {"ingest", "extract"}
    gone = pagelens("docs", "delete", "alpha.pdf", env=shell)
    assert gone.returncode == 0 and "deleted" in gone.stdout
    missing = pagelens("docs", "show", "alpha.pdf", env=shell)
    assert missing.returncode == 2 and "not_found" in missing.stderr, "the server's error, with its code"
    again = pagelens("serve", "--port", str(free_port()), env=shell)
    assert again.returncode == 1 and "store_locked" in again.stderr and url in again.stderr


def test_the_ui_uses_the_running_server(server: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    url, env = server
    for k in ("PAGELENS_DATA_DIR", "PAGELENS_ENCODER__ENABLED", "PAGELENS_VLM__CAPTIONS"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.delenv("PAGELENS_API_KEY", raising=False)
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app" / "ui.py"), default_timeout=120).run()
        assert not at.exception, at.exception
        # the server has a key: the UI asks for one, and then acts as it (not as the data dir's local token)
        assert [t.label for t in at.text_input] == ["API key"]
        at.text_input[0].input("the-admin-key")
        at.button[0].click().run()
        assert any("Signed in as **bootstrap**" in str(c.value) for c in at.sidebar.caption)
        pdf = _pdf(tmp_path / "gamma.pdf", "gamma ledger")
        at.file_uploader[0].set_value([(pdf.name, pdf.read_bytes(), "application/pdf")])
        next(b for b in at.main.button if b.label == "Ingest").click().run()
        assert not at.exception, at.exception
        assert any("gamma.pdf: ingested" in s.value for s in at.success), [s.value for s in at.success]
        listed = httpx.get(f"{url}/documents", headers={"X-API-Key": "the-admin-key"}).json()
        assert [d["name"] for d in listed] == ["gamma.pdf"], "the server ingested it, into the store it holds"
        at.sidebar.radio[0].set_value(next(o for o in at.sidebar.radio[0].options if "Search" in o)).run()
        at.text_input[0].input("gamma ledger")
        next(b for b in at.main.button if b.label == "Search").click().run()
        assert not at.exception, at.exception
        assert len(at.main.get("image")) >= 1, "page images come from the server's page route"
    finally:
        st.cache_resource.clear()
