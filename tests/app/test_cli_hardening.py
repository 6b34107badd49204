"""Issue #11, the CLI hardening report: start-up imports, bad settings and data dirs, a deterministic demo,
fast model failures, batch modes that go on past a bad line, symlinked folders, output that fits 80 columns,
a page-counting progress bar, and a warning when the API is served to the network without a key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.errors import ConfigError, ModelUnavailable
from tests.conftest import ROOT
from tests.ingest.clirun import cli_env, pagelens, popen

HEAVY = ("pymupdf", "torch", "open_clip", "transformers", "onnxruntime")


def _tiny_pdf(path: Path, text: str = "relational databases store tables") -> Path:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page(width=300, height=200).insert_text((20, 50), text, fontsize=12)
    doc.save(path)
    return path


@pytest.fixture
def ingested(tmp_path: Path) -> tuple[dict[str, str], str]:
    """A fresh data dir holding one small text PDF: (environment, doc_id)."""
    env = cli_env(tmp_path / "data", None)
    res = pagelens("ingest", str(_tiny_pdf(tmp_path / "tiny.pdf")), "--report", str(tmp_path / "r.json"), env=env)
    assert res.returncode == 0, res.stderr
    return env, json.loads((tmp_path / "r.json").read_text())["files"][0]["doc_id"]


# -- 1. start-up: read commands import no heavy library --------------------------------------------------
IMPORT_PROBE = """
import json, sys
from app.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["docs", "list"], ["search", "relational"], ["docs", "show", "tiny.pdf"]])
def test_read_commands_import_no_heavy_library(ingested: tuple[dict[str, str], str], args: list[str]) -> None:
    env, _ = ingested
    probe = IMPORT_PROBE.format(heavy=HEAVY)
    res = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    if args[0] == "search":
        assert "tiny.pdf" in res.stdout, "the search ran and found the page"
    assert json.loads(res.stderr.strip().splitlines()[-1]) == [], f"{args} imported heavy libraries"


# -- 2. settings and the data dir -------------------------------------------------------------------------
@pytest.mark.parametrize(("var", "value", "allowed"), [
    ("PAGELENS_VLM__BACKEND", "transformerz", "'transformers'"),
    ("PAGELENS_INGEST__FILE_TIMEOUT_S", "abc", "valid number"),
])
def test_bad_setting_is_one_line_naming_the_variable(tmp_path: Path, var: str, value: str, allowed: str) -> None:
    (tmp_path / "data").mkdir()
    res = pagelens("docs", "list", env=cli_env(tmp_path / "data", None, **{var: value}))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert var in res.stderr and repr(value) in res.stderr and allowed in res.stderr


@pytest.mark.parametrize("args", [["docs", "list"], ["docs", "show", "x"], ["search", "x"], ["ask", "x"],
                                  ["locate", "--queries", "q.jsonl"]])
def test_read_commands_never_create_a_data_dir(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "mistyped"
    (tmp_path / "q.jsonl").write_text('{"id": 1, "doc_id": "x", "page": 1, "value": "v"}\n')
    args = [str(tmp_path / a) if a.endswith(".jsonl") else a for a in args]
    res = pagelens(*args, env=cli_env(missing, None))
    assert res.returncode == 1, res.stderr
    assert f"no PageLens data at {missing}; ingest something first or set PAGELENS_DATA_DIR" in res.stderr
    assert not missing.exists(), "a mistyped data dir must not become an empty store"


def test_unusable_data_dir_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    for data_dir, args in [(a_file / "data", ["ingest", str(a_file)]), (a_file, ["docs", "list"])]:
        res = pagelens(*args, env=cli_env(data_dir, None))
        assert res.returncode == 1
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert f"PAGELENS_DATA_DIR={data_dir}" in res.stderr


def test_read_only_data_dir_blames_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.service import check_data_dir
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, None)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root ignores chmod; the check asks os.access
    for create in (True, False):
        with pytest.raises(ConfigError, match=r"PAGELENS_DATA_DIR=.* is not writable") as e:
            check_data_dir(settings, create=create)
        assert "DATABASE_URL" not in e.value.message


# -- 3. the demo sample is the same file every run ------------------------------------------------------------
def test_demo_sample_pdf_is_byte_identical(tmp_path: Path) -> None:
    from app.demo import make_sample_pdf

    first = make_sample_pdf(tmp_path / "a" / "sample.pdf").read_bytes()
    again = make_sample_pdf(tmp_path / "b" / "sample.pdf").read_bytes()
    assert first == again, "the same sample bytes, so a second demo run is 'unchanged'"


# -- 4. a missing transformers model fails at once, saying what to do ------------------------------------------
@pytest.mark.parametrize("model", ["./no-such-model", "~/no-such-model", "/nowhere/qwen", "models/qwen/vl"])
def test_missing_model_dir_says_so(model: str) -> None:
    from schemas.settings import VlmSettings
    from vlm.transformers_backend import TransformersBackend

    with pytest.raises(ModelUnavailable, match=r"no model directory at .*PAGELENS_VLM__MODEL"):
        TransformersBackend(VlmSettings(model=model))


def test_hub_model_offline_or_unreachable_fails_without_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from schemas.settings import VlmSettings
    from vlm.transformers_backend import TransformersBackend

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable, match=r"not in the offline HF cache \(HF_HUB_OFFLINE is set\)"):
        TransformersBackend(VlmSettings(model="pagelens-test/no-such-vlm"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    with pytest.raises(ModelUnavailable, match=r"unreachable.*PAGELENS_VLM__MODEL"):
        TransformersBackend(VlmSettings(model="pagelens-test/no-such-vlm"))


# -- 5. batch modes report a bad line and go on ---------------------------------------------------------------
def test_batch_search_reports_bad_lines_and_goes_on(ingested: tuple[dict[str, str], str], tmp_path: Path) -> None:
    env, _ = ingested
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a", "question": "relational"}\n{not json\n\n{"question": "no id"}\n'
                 '{"id": "b", "question": "tables"}\n')
    res = pagelens("search", "--queries", str(q), env=env)
    assert res.returncode == 1, "some line failed"
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x.get("id") for x in lines] == ["a", None, None, "b"], "every line answered, in order"
    assert [x["line"] for x in lines if "error" in x] == [2, 4], "blank lines count, errors name their line"
    assert all(x["error"]["code"] == "invalid_input" and x["error"]["message"] for x in lines if "error" in x)
    assert lines[3]["hits"] and lines[3]["hits"][0]["path"].endswith("tiny.pdf")


def test_batch_locate_reports_bad_lines_and_goes_on(ingested: tuple[dict[str, str], str], tmp_path: Path) -> None:
    env, doc_id = ingested
    q = tmp_path / "q.jsonl"
    rows = [{"id": 1, "doc_id": doc_id, "page": "one", "value": "tables"},
            {"id": 2, "doc_id": "no-such-doc", "page": 1, "value": "tables"},
            {"id": 3, "doc_id": doc_id, "page": 1, "value": "tables"}]
    q.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = pagelens("locate", "--queries", str(q), env=env)
    assert res.returncode == 1
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(x["line"], x["id"], x["error"]["code"]) for x in lines[:2]] == [(1, 1, "invalid_input"),
                                                                            (2, 2, "not_found")]
    assert lines[2]["id"] == 3 and lines[2]["status"] == "verified"


# -- 6. symlinked folders are followed, without loops -----------------------------------------------------------
def test_discover_follows_symlinked_folders_once(tmp_path: Path) -> None:
    from ingest.discover import discover

    real, top = tmp_path / "real", tmp_path / "top"
    (real / "deep").mkdir(parents=True)
    top.mkdir()
    for f in (real / "deep" / "b.pdf", top / "a.pdf"):
        f.write_bytes(b"%PDF")
    (top / "linked").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(tmp_path, target_is_directory=True)  # back up the tree: must not loop
    found = discover([top])
    assert found == [top / "a.pdf", top / "linked" / "deep" / "b.pdf"]


# -- 7. friction ---------------------------------------------------------------------------------------------------
def test_missing_siglip_note_is_at_most_two_lines(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", None, COLUMNS="80")
    del env["PAGELENS_ENCODER__ENABLED"]  # the default hub encoder, offline and not cached
    env["HF_HOME"] = str(tmp_path / "hf")
    res = pagelens("ingest", str(_tiny_pdf(tmp_path / "t1.pdf")), str(_tiny_pdf(tmp_path / "t2.pdf", "other")),
                   env=env)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if "Page images are not embedded" in line]
    assert len(starts) == 1, "said once per run"
    note = [lines[starts[0]]]
    for line in lines[starts[0] + 1:]:
        if line.startswith(("note:", "ingest:")) or "pages ·" in line:  # the next note, the progress
            break
        note.append(line)
    assert len(note) <= 2 and "PAGELENS_ENCODER__MODEL" in " ".join(note), note


def test_each_notice_printed_once_and_bar_counts_pages(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from app import cli
    from app.cli import _progress_bar
    from ingest.pipeline import Progress

    monkeypatch.setattr(cli, "err", Console(stderr=True, force_terminal=True))  # a bar on a terminal
    bar, on_progress = _progress_bar()
    with bar:
        for done in (0, 40):
            on_progress(Progress(files_total=1, files_done=0, pages_done=done, pages_total=400, current="big.pdf",
                                 notice="the encoder is missing", work_done=done / 400))
        task = bar.tasks[0]
        assert (task.total, task.completed) == (1, 0.1), "one long file moves by its share of pages (an ETA)"
        on_progress(Progress(files_total=5, files_done=1, pages_done=41, pages_total=41, current="x", work_done=1.0))
        assert (bar.tasks[0].total, bar.tasks[0].completed) == (5, 1.0), "the total is the files, known from the start"
    assert capsys.readouterr().err.count("the encoder is missing") == 1


def test_without_a_terminal_progress_is_a_line_per_file_and_per_500_pages(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import _progress_bar
    from ingest.pipeline import Progress

    bar, on_progress = _progress_bar()  # stderr is captured here: not a terminal
    with bar:
        for done in range(0, 1300, 100):  # one long file, 1,200 pages
            on_progress(Progress(files_total=2, files_done=0, pages_done=done, pages_total=1200, current="big.pdf"))
        on_progress(Progress(files_total=2, files_done=1, pages_done=1200, pages_total=1210, current="big.pdf"))
        on_progress(Progress(files_total=2, files_done=2, pages_done=1210, pages_total=1210, current="small.pdf"))
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("ingest:")]
    assert [x.split(",")[0] for x in lines] == ["ingest: 0/2 files"] * 2 + ["ingest: 1/2 files", "ingest: 2/2 files"]
    assert "1000 pages" in lines[1] and "1210 pages" in lines[-1]


def test_ingest_report_shows_warnings(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from app import cli
    from app.cli import _print_report
    from schemas.results import FileOutcome, IngestReport

    monkeypatch.setattr(cli, "out", Console(width=300))

    moved = FileOutcome(path="a.pdf", doc_id="d" * 64, status="ingested", pages=1, pending=["embed"],
                        warnings=["moved from collection 'inbox' to 'contracts'"])
    _print_report(IngestReport(files=[moved]))
    shown = " ".join(capsys.readouterr().out.split())
    assert "pending: embed; moved from collection 'inbox' to 'contracts'" in shown


def test_docs_list_fits_80_columns(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", None, COLUMNS="80")
    long_name = _tiny_pdf(tmp_path / ("a-very-long-file-name-" * 4 + ".pdf"))
    rep = tmp_path / "r.json"
    assert pagelens("ingest", str(long_name), "-c", "collection-with-a-long-name", "--report", str(rep),
                    env=env).returncode == 0
    doc_id = json.loads(rep.read_text())["files"][0]["doc_id"]
    res = pagelens("docs", "list", env=env)
    assert res.returncode == 0 and all(len(line) <= 80 for line in res.stdout.splitlines()), res.stdout
    row = next(line for line in res.stdout.splitlines() if doc_id[:12] in line)  # the id on one line
    assert "a-very-long-file-name" in row and "…" in row, "long names cut with an ellipsis"
    assert "complete*" in row and "* pending: caption, embed" in " ".join(res.stdout.split()), "one line a row"


# -- 8. serving to the network without a key warns -------------------------------------------------------------
@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                ("127.0.1.1", True), ("0.0.0.0", False), ("::", False),
                                                ("192.168.1.5", False), ("myhost", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    from app.cli import is_loopback

    assert is_loopback(host) is loopback


def test_serve_on_all_interfaces_without_key_warns(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "data").mkdir()
    proc = popen("serve", "--host", "0.0.0.0", "--port", str(port), env=cli_env(tmp_path / "data", None))
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert first.startswith("warning") and "PAGELENS_API_KEY" in first and "0.0.0.0" in first


def test_ingest_without_ray_never_imports_ray(tmp_path: Path) -> None:
    """Ray is an optional extra: a plain ingest (local readers) runs without importing it, even where it is
    installed; only ``--ray`` does."""
    env = cli_env(tmp_path / "data", None)
    probe = IMPORT_PROBE.format(heavy=["ray", "ray.data", "pyarrow"])
    res = subprocess.run([sys.executable, "-c", probe, "ingest", str(_tiny_pdf(tmp_path / "tiny.pdf"))], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1 ingested" in res.stdout
    assert json.loads(res.stderr.strip().splitlines()[-1]) == [], "a local ingest imported Ray"
