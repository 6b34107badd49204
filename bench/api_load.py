"""HTTP API overhead on /search: `pagelens serve` in its own process on loopback, load from this process
(threads with keep-alive clients) for a fixed time; compares with the same searches in-process.

    python bench/api_load.py [--concurrency 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus" / "pdfs"
QUESTIONS = ["spreadsheet import", "linear regression models", "matrix inverse", "relational databases",
             "binary files", "plotting graphics", "statistical distributions", "loops and conditionals"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update({"PAGELENS_DATA_DIR": tempfile.mkdtemp(prefix="pagelens-api-"), "PAGELENS_ENCODER__ENABLED": "false",
                "PYTHONPATH": str(ROOT)})
    subprocess.run([sys.executable, "-m", "app.cli", "ingest", str(CORPUS)], env=env, check=True,
                   capture_output=True)

    from app.service import Service
    from schemas.settings import EncoderSettings, Settings

    svc = Service(Settings(data_dir=Path(env["PAGELENS_DATA_DIR"]), encoder=EncoderSettings(enabled=False)))
    lat = []
    for i in range(400):
        t = time.perf_counter()
        svc.search(QUESTIONS[i % len(QUESTIONS)], k=5)
        lat.append((time.perf_counter() - t) * 1000)
    svc.close()
    print(f"in-process search: p50 {np.percentile(lat, 50):.2f} ms  p95 {np.percentile(lat, 95):.2f} ms")

    port = 18765
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        results: list[float] = []
        errors = [0]
        stop = time.perf_counter() + args.seconds

        def worker(n: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                i = n
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    r = c.post("/search", json={"question": QUESTIONS[i % len(QUESTIONS)], "k": 5})
                    results.append((time.perf_counter() - t) * 1000)
                    errors[0] += r.status_code != 200
                    i += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        dt = time.perf_counter() - t0
        print(f"HTTP /search, {args.concurrency} concurrent clients, {dt:.0f}s: {len(results) / dt:.0f} requests/s, "
              f"p50 {np.percentile(results, 50):.1f} ms, p95 {np.percentile(results, 95):.1f} ms, errors {errors[0]}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
