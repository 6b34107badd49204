"""A stand-in Qdrant *server* for tests: the REST routes PageLens's ``ServerIndex`` calls, served over real HTTP on a
free loopback port and answered by qdrant-client's own local engine (``QdrantClient(":memory:")``, the engine the
congruence tests already compare with Qdrant Edge).

Why a stand-in: no Qdrant server runs on this machine (no binary in the package registries, no Docker, no crates
registry to build one). What it lets the tests prove for real: several processes (Ray workers, the driver) writing
to one shared index through qdrant-client's REST client — the path a real server is used through. Requests are
served one at a time (one event loop), as the local engine is not thread-safe."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request  # module level: the routes' annotations are resolved in this namespace
from qdrant_client import QdrantClient, models


def _ok(result: Any) -> dict[str, Any]:
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json", exclude_unset=False)
    return {"result": result, "status": "ok", "time": 0.0}


def _done() -> dict[str, Any]:
    return _ok({"operation_id": 0, "status": "completed"})


def make_app(engine: QdrantClient) -> Any:
    app = FastAPI()
    calls: dict[str, int] = {}
    app.state.calls = calls

    def count(name: str) -> None:
        calls[name] = calls.get(name, 0) + 1

    @app.get("/")
    async def root() -> dict[str, Any]:
        from importlib.metadata import version

        return {"title": "qdrant - vector search engine (test stand-in)", "version": version("qdrant-client")}

    @app.get("/collections/{name}/exists")
    async def exists(name: str) -> dict[str, Any]:
        return _ok({"exists": engine.collection_exists(name)})

    @app.put("/collections/{name}")
    async def create(name: str, request: Request) -> dict[str, Any]:
        body = models.CreateCollection.model_validate(await request.json())
        return _ok(engine.create_collection(name, vectors_config=body.vectors or {},
                                            sparse_vectors_config=body.sparse_vectors))

    @app.put("/collections/{name}/index")
    async def index(name: str) -> dict[str, Any]:
        return _done()  # the local engine has no payload indexes (filters work without them)

    @app.get("/collections/{name}")
    async def info(name: str) -> dict[str, Any]:
        return _ok(engine.get_collection(name))

    @app.patch("/collections/{name}")
    async def update(name: str, request: Request) -> dict[str, Any]:
        body = models.UpdateCollection.model_validate(await request.json())
        engine.update_collection(name, vectors_config=body.vectors, sparse_vectors_config=body.sparse_vectors)
        return _ok(True)

    @app.put("/collections/{name}/vectors/{vector}")
    async def create_vector(name: str, vector: str, request: Request) -> dict[str, Any]:
        body = await request.json()
        cfg: Any = (models.DenseVectorNameConfig.model_validate(body) if "dense" in body
                    else models.SparseVectorNameConfig.model_validate(body))
        engine.create_vector_name(name, vector, cfg)
        return _done()

    @app.delete("/collections/{name}/vectors/{vector}")
    async def delete_vector(name: str, vector: str) -> dict[str, Any]:
        engine.delete_vector_name(name, vector)
        return _done()

    @app.put("/collections/{name}/points")
    async def upsert(name: str, request: Request) -> dict[str, Any]:
        count("upsert")
        body = models.PointsList.model_validate(await request.json())
        engine.upsert(name, body.points)
        return _done()

    @app.put("/collections/{name}/points/vectors")
    async def update_vectors(name: str, request: Request) -> dict[str, Any]:
        body = models.UpdateVectors.model_validate(await request.json())
        engine.update_vectors(name, body.points)
        return _done()

    @app.post("/collections/{name}/points/payload")
    async def set_payload(name: str, request: Request) -> dict[str, Any]:
        body = models.SetPayload.model_validate(await request.json())
        selector: Any = body.filter if body.filter is not None else body.points
        engine.set_payload(name, body.payload, points=selector)
        return _done()

    @app.post("/collections/{name}/points/delete")
    async def delete(name: str, request: Request) -> dict[str, Any]:
        count("delete")
        raw = await request.json()
        selector: Any = (models.FilterSelector.model_validate(raw) if "filter" in raw
                         else models.PointIdsList.model_validate(raw))
        engine.delete(name, points_selector=selector)
        return _done()

    @app.post("/collections/{name}/points/query")
    async def query(name: str, request: Request) -> dict[str, Any]:
        q = models.QueryRequest.model_validate(await request.json())
        res = engine.query_points(name, query=q.query, using=q.using, prefetch=q.prefetch, query_filter=q.filter,
                                  limit=q.limit or 10, with_payload=q.with_payload or False)
        return _ok(res)

    @app.post("/collections/{name}/points/query/batch")
    async def query_batch(name: str, request: Request) -> dict[str, Any]:
        body = models.QueryRequestBatch.model_validate(await request.json())
        return _ok(engine.query_batch_points(name, body.searches))

    @app.post("/collections/{name}/points/scroll")
    async def scroll(name: str, request: Request) -> dict[str, Any]:
        s = models.ScrollRequest.model_validate(await request.json())
        records, offset = engine.scroll(name, scroll_filter=s.filter, limit=s.limit or 10, offset=s.offset,
                                        with_payload=s.with_payload or False, with_vectors=s.with_vector or False)
        return _ok({"points": [r.model_dump(mode="json") for r in records], "next_page_offset": offset})

    @app.post("/collections/{name}/points/count")
    async def count_points(name: str, request: Request) -> dict[str, Any]:
        c = models.CountRequest.model_validate(await request.json())
        return _ok(engine.count(name, count_filter=c.filter, exact=True))

    return app


@contextmanager
def qdrant_server() -> Iterator[tuple[str, Any]]:
    """Serve a fresh empty stand-in on a free loopback port; yields (its URL, the app: ``app.state.calls`` counts
    upserts and deletes)."""
    import uvicorn

    app = make_app(QdrantClient(location=":memory:"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the Qdrant stand-in did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    """``python -m tests.qdrant_rest``: serve a stand-in in its own process (benchmarks: its CPU is not theirs);
    prints its URL, then serves until killed."""
    import sys

    with qdrant_server() as (url, _app):
        print(url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            sys.exit(0)


if __name__ == "__main__":
    main()
