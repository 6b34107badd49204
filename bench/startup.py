"""Wall time of the read-only CLI commands, from process start to exit (issue 11: ``search``, ``docs list``,
``locate`` ≤ 0.5 s on a quiet machine), against the floor set by the libraries every command imports.

Ingests one small generated PDF into a temporary data dir (default settings otherwise), then runs each command
``--runs`` times and prints the median and the best.

    python bench/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymupdf

ROOT = Path(__file__).resolve().parents[1]
FLOOR = "import sqlalchemy, pydantic_settings, typer, rich.console"


def timed(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "sample.pdf"
        doc = pymupdf.open()
        doc.new_page().insert_text((72, 72), "matrix inverse and linear models", fontsize=12)
        doc.save(str(pdf))
        env = {**os.environ, "PAGELENS_DATA_DIR": str(Path(tmp) / "data"), "PAGELENS_ENCODER__ENABLED": "false"}
        queries = Path(tmp) / "q.jsonl"
        queries.write_text('{"id": "1", "doc_id": "sample.pdf", "page": 1, "value": "linear"}\n')
        cli = [sys.executable, "-m", "app.cli"]
        subprocess.run([*cli, "ingest", str(pdf)], env=env, cwd=ROOT, check=True, capture_output=True)
        rows = [("python -c pass", [sys.executable, "-c", "pass"]),
                ("library floor", [sys.executable, "-c", FLOOR]),
                ("pagelens --help", [*cli, "--help"]),
                ("pagelens docs list", [*cli, "docs", "list"]),
                ("pagelens search", [*cli, "search", "matrix inverse"]),
                ("pagelens locate", [*cli, "locate", "--queries", str(queries)])]
        print(f"{'command':<22} {'median s':>9} {'best s':>7}")
        for name, cmd in rows:
            med, best = timed(cmd, env, args.runs)
            print(f"{name:<22} {med:9.3f} {best:7.3f}")


if __name__ == "__main__":
    main()
