"""What an HNSW index costs a late-interaction (MaxSim multivector) named vector on Qdrant Edge, and what a rerank
of the fused candidates by MaxSim costs in one nested query — the design input for issue 19 item 2.

Builds a shard with a 16-d dense ``image`` vector and a ``patches`` multivector (``--rows`` × ``--dim`` per page,
float16 storage) over ``--pages`` random pages, then times ``optimize()`` (a) with Qdrant's default HNSW and (b)
with ``m=0`` (no graph: the vector only reranks), set through ``EdgeShard.load(path, EdgeConfig(vectors=...))``
since ``create_dense_vector`` takes no HNSW config; then p50/p95 of one query: ``--candidates`` from the image
prefetch, reranked by MaxSim against a ``--query-rows``-row query.

    python bench/multivector_hnsw.py [--pages 2000] [--rows 100] [--dim 64] [--candidates 64] [--skip-hnsw]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import qdrant_edge as qe


def build(path: Path, pages: int, rows: int, dim: int, m0: bool, rng: np.random.Generator) -> qe.EdgeShard:
    sparse = {"text": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(sparse_vectors=sparse))
    mv = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
    shard.update(qe.UpdateOperation.create_dense_vector("image", 16, qe.Distance.Cosine))
    shard.update(qe.UpdateOperation.create_dense_vector("patches", dim, qe.Distance.Cosine, multivector_config=mv,
                                                        datatype=qe.VectorStorageDatatype.Float16))
    if m0:  # the shard's config rewritten in place: the multivector gets no HNSW graph
        shard.close()
        vectors = {"image": qe.EdgeVectorParams(16, qe.Distance.Cosine),
                   "patches": qe.EdgeVectorParams(dim, qe.Distance.Cosine, multivector_config=mv,
                                                  datatype=qe.VectorStorageDatatype.Float16,
                                                  hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100,
                                                                                 full_scan_threshold=10000))}
        shard = qe.EdgeShard.load(str(path), qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse))
    for start in range(0, pages, 500):
        shard.update(qe.UpdateOperation.upsert_points([
            qe.Point(id=i, vector={"image": rng.normal(size=16).tolist(),
                                   "patches": rng.normal(size=(rows, dim)).astype(np.float32).tolist()},
                     payload={"doc_id": "d", "page": i}) for i in range(start, min(pages, start + 500))]))
    return shard


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--query-rows", type=int, default=20)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--skip-hnsw", action="store_true", help="only the m=0 run (the default HNSW takes minutes)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    for m0 in ([True] if a.skip_hnsw else [True, False]):
        tmp = Path(tempfile.mkdtemp())
        try:
            shard = build(tmp / "shard", a.pages, a.rows, a.dim, m0, rng)
            t = time.perf_counter()
            shard.optimize()
            built = time.perf_counter() - t
            q = rng.normal(size=(a.query_rows, a.dim)).tolist()
            ms = []
            for _ in range(a.queries):
                pre = qe.Prefetch(limit=a.candidates, query=qe.Query.Nearest(rng.normal(size=16).tolist(),
                                                                             using="image"))
                t = time.perf_counter()
                shard.query(qe.QueryRequest(limit=10, prefetches=[pre], query=qe.Query.Nearest(q, using="patches")))
                ms.append((time.perf_counter() - t) * 1000)
            shard.close()
            print(f"{'m=0 ' if m0 else 'HNSW'}  pages {a.pages}  rows {a.rows}x{a.dim}  optimize {built:8.2f} s  "
                  f"rerank {a.candidates}: p50 {np.percentile(ms, 50):.2f} ms  p95 {np.percentile(ms, 95):.2f} ms")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
