"""Captions at ingest against a stand-in for vLLM: a loopback OpenAI-compatible server that answers every request
after ``--latency`` seconds and serves up to 40 at once (issue 10: one request at a time gave 0.8 captions/s
on ../shared/corpus/pdfs, 157 pages, against a 1.0 s server).

    python bench/captions_concurrency.py [--latency 1.0] [--concurrency 1 4 16 32]
    python bench/captions_concurrency.py --whole [--runs 3]

Ingests the corpus once per concurrency setting (SigLIP off, captions on) and prints captions/s of the caption
pass (pages / its wall time), the most requests the server saw in flight, and the mean image payload size.
``--whole``: the issue-22 figure — ``pagelens ingest`` of the corpus into a fresh data dir, whole process (start-up,
reading, captions, the text encoder, the index build), at the defaults but the VLM URL; captions / wall time, and
when the first request reached the server."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.vlm.chat_server import Gauge, chat_server, ok  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "pdfs"
CAPTION = json.dumps({"kind": "text page", "title": "A manual page", "summary": "Prose about R.", "entities": []})


def image_bytes(requests: list[dict]) -> int:
    """Bytes of the page-image data URLs the server received."""
    return sum(len(c["image_url"]["url"]) for body in requests for m in body["messages"]
               if isinstance(m["content"], list) for c in m["content"] if c["type"] == "image_url")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--whole", action="store_true", help="whole-process ingest at the defaults")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    pdfs = sorted(CORPUS.glob("*.pdf"))
    if args.whole:
        whole(pdfs, args.latency, args.runs)
        return
    print(f"{'concurrency':>11} {'pages':>6} {'caption pass s':>15} {'captions/s':>11} {'peak in flight':>15} "
          f"{'KB/image':>9}")
    for n in args.concurrency:
        with chat_server() as srv, tempfile.TemporaryDirectory() as tmp:
            gauge = Gauge(args.latency, ok(CAPTION))
            srv.script = [gauge] * 2000
            os.environ.update({"PAGELENS_DATA_DIR": tmp, "PAGELENS_ENCODER__ENABLED": "false",
                               "PAGELENS_VLM_URL": srv.url, "PAGELENS_VLM__MODEL": "served-model",
                               "PAGELENS_VLM__CONCURRENCY": str(n), "PAGELENS_VLM__CAPTIONS": "false"})
            from app.service import Service

            svc = Service()
            svc.ingest(pdfs)  # words first, without captions
            svc.close()
            os.environ["PAGELENS_VLM__CAPTIONS"] = "true"
            svc = Service()
            t0 = time.perf_counter()
            report = svc.ingest(pdfs)  # the caption pass alone (words are unchanged)
            dt = time.perf_counter() - t0
            svc.close()
            pages = sum(f.pages for f in report.files)
            done = len(srv.requests)
            print(f"{n:11d} {pages:6d} {dt:15.1f} {done / dt:11.2f} {gauge.peak:15d} "
                  f"{image_bytes(srv.requests) / max(1, done) / 1024:9.0f}")


def whole(pdfs: list[Path], latency: float, runs: int) -> None:
    print("| run | pages | wall s | captions/s | first request after s | last answer after s | peak in flight |\n"
          "|---|---|---|---|---|---|---|")
    for run in range(runs):
        with chat_server() as srv, tempfile.TemporaryDirectory() as tmp:
            gauge = Gauge(latency, ok(CAPTION))
            srv.script = [gauge] * 2000
            env = {**os.environ, "PAGELENS_DATA_DIR": tmp, "PAGELENS_VLM_URL": srv.url,
                   "PAGELENS_VLM__MODEL": "served-model", "PYTHONPATH": str(ROOT)}
            t0 = time.time()
            subprocess.run([sys.executable, "-m", "app.cli", "ingest", *map(str, pdfs)], env=env, check=True,
                           capture_output=True)
            dt = time.time() - t0
            first = min(gauge.started or [t0]) - t0
            last = max(gauge.started or [t0]) - t0 + latency  # the caption window's end; the rest is after it
            print(f"| {run + 1} | {len(srv.requests)} | {dt:.1f} | {len(srv.requests) / dt:.1f} | {first:.1f} | "
                  f"{last:.1f} | {gauge.peak} |")


if __name__ == "__main__":
    main()
