"""Peak memory ingesting a long PDF (default refman.pdf, 2,415 pages; fetch with bench/corpus.sh) with the real
``pagelens ingest`` command. Samples the RSS of the whole process tree (main + page readers) every 50 ms and
prints the peak of the main process, of any reader, and of their sum. Target: < 2 GB.

    python bench/peak_rss.py [PDF] [--encoder DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pdf", nargs="?", default=str(HERE / "out" / "refman.pdf"))
    ap.add_argument("--encoder", help="SigLIP checkpoint dir (default: no encoder)")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update({"PAGELENS_DATA_DIR": tempfile.mkdtemp(prefix="pagelens-rss-"), "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": str(ROOT)})
    if args.encoder:
        env["PAGELENS_ENCODER__MODEL"] = args.encoder
    else:
        env["PAGELENS_ENCODER__ENABLED"] = "false"
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "ingest", args.pdf], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    main_p = psutil.Process(proc.pid)
    peak_main = peak_child = peak_sum = 0
    while proc.poll() is None:
        try:
            main_rss = main_p.memory_info().rss
            kids = [c.memory_info().rss for c in main_p.children(recursive=True)]
        except psutil.Error:
            break
        peak_main, peak_child = max(peak_main, main_rss), max([peak_child, *kids])
        peak_sum = max(peak_sum, main_rss + sum(kids))
        time.sleep(0.05)
    out = proc.communicate()[0]
    gb = 2**30
    print(out.strip().splitlines()[-1] if out.strip() else "(no output)")
    print(f"file: {Path(args.pdf).name}  encoder: {args.encoder or 'none'}  wall: {time.perf_counter() - t:.1f}s  "
          f"exit: {proc.returncode}")
    print(f"peak RSS: main {peak_main / gb:.2f} GB, reader {peak_child / gb:.2f} GB, "
          f"sum {peak_sum / gb:.2f} GB  (target < 2 GB)")


if __name__ == "__main__":
    main()
