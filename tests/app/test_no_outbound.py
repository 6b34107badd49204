"""PageLens makes no outbound calls other than to servers the user configured: ingest (with OCR) and search run
under strace, which sees every connect/sendto of every process and thread, native libraries included (the
onnxruntime telemetry that resolved a Microsoft events host came from C++, invisible to a Python-level guard)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest

from tests.conftest import PDFS, ROOT
from tests.ingest.clirun import cli_env

pytestmark = pytest.mark.corpus
_LOOPBACK = re.compile(r'inet_addr\("127\.|inet_pton\(AF_INET6, "::1"')


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (CI installs it)")
def test_ingest_and_search_make_no_outbound_connection_or_lookup(tmp_path: Path) -> None:
    png = tmp_path / "card.png"
    pymupdf.open(PDFS / "refcard-a4.pdf")[0].get_pixmap(dpi=90).save(png)
    env = cli_env(tmp_path / "d", None)
    log = tmp_path / "strace.log"
    for i, args in enumerate((["ingest", str(png), str(PDFS / "refcard-a4.pdf")], ["search", "octave"])):
        res = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", f"{log}.{i}",
                              sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        calls = [ln for ln in Path(f"{log}.{i}").read_text().splitlines() if "AF_INET" in ln or "htons(53)" in ln]
        outbound = [ln for ln in calls if not _LOOPBACK.search(ln)]
        assert outbound == [], f"{args[0]} talked to the network: {outbound[:3]}"
