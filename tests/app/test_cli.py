"""The ``pagelens`` command as a user runs it: exit codes, the report file, search output, docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BADPDF, PDFS
from tests.ingest.clirun import cli_env, pagelens

pytestmark = pytest.mark.corpus


@pytest.fixture
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data dir of the test's own (a shared one made "ingested" vs "unchanged" depend on the test order)."""
    return cli_env(tmp_path_factory.mktemp("cli"), None)


def test_ingest_report_and_exit_codes(env: dict[str, str], tmp_path: Path) -> None:
    rep = tmp_path / "report.json"
    bad = BADPDF / "files/qpdf/c-empty.pdf"
    res = pagelens("ingest", str(PDFS / "R-data.pdf"), str(bad), "--report", str(rep), env=env)
    assert res.returncode == 1, "a failed file makes the exit code 1"
    assert "Page images are not embedded" in res.stderr  # said once, clearly
    assert res.stderr.count("PAGELENS_ENCODER__ENABLED") <= 1
    files = json.loads(rep.read_text())["files"]
    names = [(Path(f["path"]).name, f["status"]) for f in files]
    assert names == [("R-data.pdf", "ingested"), ("c-empty.pdf", "failed")]
    assert files[0]["pages"] == 41 and len(files[0]["doc_id"]) == 64 and files[0]["error"] is None
    assert files[1]["error"]["code"] == "empty_document" and files[1]["error"]["message"]
    again = pagelens("ingest", str(PDFS / "R-data.pdf"), "--report", str(rep), env=env)
    assert again.returncode == 0 and json.loads(rep.read_text())["files"][0]["status"] == "unchanged"
    assert pagelens("ingest", str(tmp_path / "missing.pdf"), env=env).returncode == 2
    assert pagelens("ingest", env=env).returncode == 2
    assert pagelens("search", "x", "-k", "0", env=env).returncode == 2


def test_search_json_and_batch(env: dict[str, str], tmp_path: Path) -> None:
    pagelens("ingest", str(PDFS / "R-data.pdf"), env=env)
    hits = json.loads(pagelens("search", "relational databases", "-k", "3", "--json", env=env).stdout)
    assert len(hits) == 3 and all(h["path"].endswith("R-data.pdf") and h["page"] >= 1 for h in hits)
    assert all(w["bbox"][0] < w["bbox"][2] for h in hits for w in h["words"]), "boxes are [x0, y0, x1, y1]"
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a", "question": "relational databases"}\n{"id": 7, "question": "spreadsheet"}\n')
    res = pagelens("search", "--queries", str(q), "-k", "2", env=env)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [x["id"] for x in lines] == ["a", 7]
    assert all(set(h) == {"doc_id", "path", "page", "score"} and len(x["hits"]) == 2 for x in lines for h in x["hits"])
    assert lines[0]["hits"][0] == {k: hits[0][k] for k in ("doc_id", "path", "page", "score")}
    q.write_text('{"question": "no id"}\n')
    bad = pagelens("search", "--queries", str(q), env=env)
    assert bad.returncode == 1, "a bad line is reported in the output, the exit code says some line failed"
    assert "each line must be a JSON object with 'id', 'question'" in json.loads(bad.stdout)["error"]["message"]


def test_docs_list_show_delete(env: dict[str, str]) -> None:
    pagelens("ingest", str(PDFS / "refcard-a4.pdf"), "--collection", "cards", env=env)
    listed = json.loads(pagelens("docs", "list", "--json", "--collection", "cards", env=env).stdout)
    assert [Path(d["name"]).name for d in listed] == ["refcard-a4.pdf"]
    shown = json.loads(pagelens("docs", "show", "refcard-a4.pdf", env=env).stdout)
    assert shown["page_count"] == 3 and shown["pending"] == ["caption", "embed"], "no encoder, no VLM here"
    res = pagelens("docs", "delete", shown["doc_id"][:10], env=env)
    assert res.returncode == 0 and "deleted" in res.stdout
    assert pagelens("docs", "show", "refcard-a4.pdf", env=env).returncode == 2
    assert json.loads(pagelens("docs", "list", "--json", "--collection", "cards", env=env).stdout) == []


def test_demo_runs_on_embedded_defaults(tmp_path: Path) -> None:
    res = pagelens("demo", env=cli_env(tmp_path / "d", None))
    assert res.returncode == 0, res.stderr
    assert "pagelens-sample.pdf p.3" in res.stdout, "the scanned page is found through its OCR words"


def test_ask_and_extract_cli(env: dict[str, str], tmp_path: Path) -> None:
    from tests.vlm.chat_server import chat_server, ok

    res = pagelens("ask", "what is this?", env=env)
    assert res.returncode == 1 and "PAGELENS_VLM_URL" in res.stderr, "fails fast, says how to configure a VLM"
    res = pagelens("extract", "--schema", str(tmp_path / "s.json"), "--doc", "x", env=env)
    assert res.returncode == 2 and "does not exist" in res.stderr
    pagelens("ingest", str(PDFS / "refcard-a4.pdf"), env=env)
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}))
    with chat_server() as srv:
        vlm_env = {**env, "PAGELENS_VLM_URL": srv.url}
        srv.script = [ok(json.dumps({"found": True, "answer": "inv", "evidence": [
            {"page": 1, "quote": "inverse", "bbox_2d": None}]}))]
        answer = json.loads(pagelens("ask", "how to invert", "-k", "1", "--json", env=vlm_env).stdout)
        assert answer["found"] and answer["evidence"][0]["status"] == "verified"
        srv.script = [ok(json.dumps({"cmd": {"value": "inverse", "page": 2, "bbox_2d": None}}))]
        res = pagelens("extract", "--schema", str(schema), "--doc", "refcard-a4.pdf", "--json", env=vlm_env)
        assert res.returncode == 0, res.stderr
        ex = json.loads(res.stdout)
        assert ex["data"] == {"cmd": "inverse"} and ex["fields"][0]["status"] in ("verified", "approximate")
        assert ex["schema_hash"] and ex["prompt_hash"] and len(ex["pages_used"]) == 3
