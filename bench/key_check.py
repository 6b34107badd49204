"""What checking an API key costs a request: the catalog lookup by the key's SHA-256 (uncached), the cached
check, and a whole guarded request through the API (TestClient, one key among ``--keys``), SQLite catalog.
Target: the key check < 1 ms.

    python bench/key_check.py [--keys 1000] [--checks 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from app.access import Gatekeeper
from schemas.settings import AccessSettings, EncoderSettings, Settings, VlmSettings


def pct(xs: list[float]) -> str:
    a = np.array(xs) * 1000
    return f"p50 {np.percentile(a, 50):.3f} ms  p95 {np.percentile(a, 95):.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--checks", type=int, default=2000)
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from app.api import create_app
    from app.service import Service

    root = Path(tempfile.mkdtemp(prefix="pagelens-keys-"))
    s = Settings(data_dir=root, encoder=EncoderSettings(enabled=False), vlm=VlmSettings(captions=False),
                 api_key="bootstrap-secret", access=AccessSettings(requests_per_minute=0))  # measure, not limit
    svc = Service(s)
    keys = [svc.create_key(f"k{i}", "reader", [f"c{i % 100}"]).key for i in range(args.keys)]
    rng = np.random.default_rng(0)
    picks = [keys[i] for i in rng.integers(0, len(keys), args.checks)]
    gate = Gatekeeper(svc.catalog, bootstrap_key=s.api_key, local_token=None)
    uncached, cached = [], []
    for k in picks:
        gate.forget()
        t = time.perf_counter()
        assert gate.principal(k) is not None
        uncached.append(time.perf_counter() - t)
        t = time.perf_counter()
        gate.principal(k)
        cached.append(time.perf_counter() - t)
    print(f"{args.keys} keys in the catalog (SQLite):")
    print(f"  key check, uncached (SHA-256 + lookup): {pct(uncached)}")
    print(f"  key check, cached:                      {pct(cached)}")
    with TestClient(create_app(service=svc)) as c:
        one = {"X-API-Key": keys[0]}
        for _ in range(50):
            c.get("/me", headers=one)
        wall = []
        for _ in range(500):
            t = time.perf_counter()
            assert c.get("/me", headers=one).status_code == 200
            wall.append(time.perf_counter() - t)
        print(f"  GET /me through the API (TestClient):   {pct(wall)}")


if __name__ == "__main__":
    main()
