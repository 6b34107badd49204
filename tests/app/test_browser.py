"""A real browser (Debian chromium driven by npm playwright-core) loads the running UI, uploads a real PDF, runs
a search and checks what is on screen. CI installs chromium and playwright-core; elsewhere this skips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PDFS, ROOT
from tests.ingest.clirun import cli_env
from tests.vlm.chat_server import free_port

pytestmark = pytest.mark.corpus
BROWSER_DIR = ROOT / "tests" / "browser"
SHOTS = os.environ.get("PAGELENS_SCREENSHOTS")


needs_browser = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists() or shutil.which("node") is None
    or not (BROWSER_DIR / "node_modules" / "playwright-core").exists(),
    reason="needs Debian chromium, node and `npm install --prefix tests/browser` (CI does this)")


def _start_ui(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "app.cli", "ui", "--port", str(port)], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                return ui, url
        except httpx.HTTPError:
            pass
        if ui.poll() is not None or time.monotonic() > deadline:
            ui.terminate()
            raise AssertionError("the UI did not start")
        time.sleep(0.3)


@needs_browser
def test_a_two_turn_conversation_with_a_citation_opened_in_a_real_browser(tmp_path: Path) -> None:
    from tests.ingest.clirun import pagelens

    env = cli_env(tmp_path / "data", None, PAGELENS_VLM__CAPTIONS="false", PAGELENS_VLM__BACKEND="words")
    assert pagelens("ingest", str(PDFS / "refcard-a4.pdf"), env=env).returncode == 0
    ui, url = _start_ui(env)
    try:
        out = Path(SHOTS) if SHOTS else tmp_path
        out.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["node", str(BROWSER_DIR / "ui_chat.js"), url, str(out)], capture_output=True,
                             text=True, timeout=300, cwd=BROWSER_DIR)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "ok: 4 chat messages" in res.stdout
        assert (out / "ask-chat.png").stat().st_size > 10_000
    finally:
        ui.terminate()
        ui.wait(10)
    listed = pagelens("conversations", "list", "--json", env=env)
    assert [c["turns"] for c in json.loads(listed.stdout)] == [2], "the chat was kept"


@needs_browser
def test_upload_and_search_in_a_real_browser(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", None, PAGELENS_VLM__CAPTIONS="false")
    ui, url = _start_ui(env)
    try:
        out = Path(SHOTS) if SHOTS else tmp_path
        out.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["node", str(BROWSER_DIR / "ui_smoke.js"), url, str(PDFS / "refcard-a4.pdf"), str(out)],
                             capture_output=True, text=True, timeout=300, cwd=BROWSER_DIR)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "ok:" in res.stdout
        for shot in ("library.png", "search.png", "ask-unconfigured.png"):
            assert (out / shot).stat().st_size > 10_000
    finally:
        ui.terminate()
        ui.wait(10)
