"""What the late-interaction rerank costs on Qdrant Edge at scale: disk per page for the ``patches`` multivector
(float32, float16, pooled float16, pooled float16 + binary quantization) and the latency the rerank adds to a query.

Builds a shard the way PageLens does (``store.qdrant_edge.EdgeIndex``: a 768-d SigLIP-like ``image`` vector with
HNSW, sparse BM25 ``text``, and ``patches`` without HNSW) over ``--pages`` random pages of realistic shapes:
``--rows`` patch vectors of ``--dim`` (ColQwen2: ~750 × 128 before pooling, ~250 after pooling by 3), then times
``--queries`` queries of the image prefetch alone and with its top ``--candidates`` reranked by MaxSim against a
``--query-rows``-row question (p50/p95; the difference is what the rerank adds).

    python bench/rerank_storage.py [--pages 100000] [--rows 250] [--dim 128] [--storage float16]
        [--quantization none] [--candidates 64]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from schemas.ids import point_id
from store import bm25
from store.qdrant_edge import EdgeIndex
from store.vectors import RERANK_VECTOR, PagePoint, PageQuery, VectorSpec

IMAGE_DIM = 768


def disk_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()[0]) / 1024


def unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=250)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--storage", choices=["float32", "float16"], default="float16")
    ap.add_argument("--quantization", choices=["none", "scalar", "binary"], default="none")
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--query-rows", type=int, default=20)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch", type=int, default=200)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="rerank-bench-"))
    try:
        ix = EdgeIndex(tmp / "qdrant")
        ix.ensure_dense("image", IMAGE_DIM)
        spec = VectorSpec(a.storage, a.quantization, hnsw=False)  # type: ignore[arg-type]
        ix.ensure_dense(RERANK_VECTOR, a.dim, spec)
        text = bm25.embed_document("a page of a long manual about regression models and data")
        t0 = time.perf_counter()
        for start in range(0, a.pages, a.batch):
            n = min(a.batch, a.pages - start)
            img, patches = unit(rng, n, IMAGE_DIM), unit(rng, n, a.rows, a.dim)
            ix.upsert([PagePoint(point_id("doc", start + i + 1), "doc", start + i + 1, "default", text,
                                 {"image": img[i].tolist(), RERANK_VECTOR: patches[i].tolist()}) for i in range(n)])
            if (start // a.batch) % 50 == 0:
                print(f"  {start + n:,} pages written, {time.perf_counter() - t0:.0f} s", flush=True)
        ix.flush()
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ix.optimize()
        opt_s = time.perf_counter() - t0
        total = disk_mb(tmp)
        print(f"pages {a.pages:,}  patches {a.rows}x{a.dim} {a.storage} quant={a.quantization}  written in "
              f"{write_s:.0f} s, optimize {opt_s:.0f} s, disk {total:,.0f} MB ({total * 1024 / a.pages:.1f} KB a page; "
              f"raw patch bytes {a.rows * a.dim * (2 if a.storage == 'float16' else 4) / 1024:.1f} KB a page)")
        q = unit(rng, a.query_rows, a.dim).tolist()
        timings: dict[str, list[float]] = {"image only": [], f"+ rerank {a.candidates}": []}
        for _ in range(a.queries):
            v = unit(rng, IMAGE_DIM).tolist()
            for name, rerank in (("image only", None), (f"+ rerank {a.candidates}", q)):
                t = time.perf_counter()
                got = ix.query(PageQuery(dense={"image": v}, sparse=None, limit=5, fusion="rrf", rerank=rerank,
                                         rerank_candidates=a.candidates, prefetch_limit=max(50, a.candidates)))
                timings[name].append((time.perf_counter() - t) * 1000)
                assert len(got) == 5
        for name, ms in timings.items():
            print(f"  query {name:14s} p50 {np.percentile(ms, 50):7.2f} ms  p95 {np.percentile(ms, 95):7.2f} ms")
        p95 = {k: np.percentile(v, 95) for k, v in timings.items()}
        print(f"  the rerank adds {p95[f'+ rerank {a.candidates}'] - p95['image only']:.2f} ms at p95")
        ix.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
