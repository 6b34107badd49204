"""Crash safety: ``kill -9`` a real ingest process mid-batch, run it again, and get the same final state as
an uninterrupted run — no duplicate points, no rows without vectors, no vectors without rows."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from app.service import Service
from tests.conftest import PDFS, make_settings
from tests.ingest.clirun import cli_env, pagelens, popen

pytestmark = pytest.mark.corpus
INPUTS = [PDFS / "R-intro.pdf", PDFS / "R-data.pdf", PDFS / "refcard-a4.pdf"]


def _state(data: Path, encoder: str, **stores: str) -> dict:
    svc = Service(make_settings(data, encoder).model_copy(update=stores))
    try:
        docs = svc.list_documents()
        state = {
            "docs": sorted((d.doc_id, d.page_count, d.status, tuple(d.pending)) for d in docs),
            "points": {d: svc.index.count(d) for d in svc.index.doc_ids()},
            "pages": {d.doc_id: svc.catalog.page_count_stored(d.doc_id) for d in docs},
            "files": sorted(p.name for p in svc.settings.files_dir.rglob("*") if p.is_file()),
            "total_points": svc.index.count(),
        }
    finally:
        svc.close()
    return state


def _page_counter(db: Path, database_url: str | None = None) -> Callable[[], int]:
    """How many page rows the catalog holds now (0 before its tables exist): the SQLite file ``db``, or
    PostgreSQL at ``database_url`` (the test's schema)."""
    if database_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(database_url)

        def count_pg() -> int:
            try:
                with engine.connect() as c:
                    return int(c.execute(text("select count(*) from pages")).scalar() or 0)
            except Exception:
                return 0

        return count_pg

    def count_sqlite() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as c:
                return int(c.execute("select count(*) from pages").fetchone()[0])
        except sqlite3.Error:
            return 0

    return count_sqlite


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory, tiny_siglip: Path) -> dict:
    """The final state of an uninterrupted run."""
    clean = tmp_path_factory.mktemp("clean")
    assert pagelens("ingest", *map(str, INPUTS), env=cli_env(clean, str(tiny_siglip))).returncode == 0
    state = _state(clean, str(tiny_siglip))
    assert state["total_points"] == 157 and not any(d[2] == "partial" for d in state["docs"])
    return state


def _ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


_ON_RAY = [pytest.mark.ray, pytest.mark.slow,
           pytest.mark.skipif(not _ray_available(), reason="pip install 'pagelens[ray]'")]


@pytest.mark.parametrize("kill_after_pages,where", [
    (1, "local"), (60, "local"), pytest.param(60, "ray", marks=_ON_RAY),
    pytest.param(60, "ray-shared", marks=[*_ON_RAY, pytest.mark.server])])
def test_kill_9_then_rerun_equals_uninterrupted(tmp_path: Path, tiny_siglip: Path, kill_after_pages: int,
                                                where: str, expected: dict, request: pytest.FixtureRequest) -> None:
    """``where="ray"``: the driver of an ingest reading on Ray (a local cluster it started) is killed; the re-run,
    on Ray again, ends in the state of an uninterrupted local run. ``"ray-shared"``: the same with a PostgreSQL
    catalog and a Qdrant server (the REST stand-in), where the Ray workers write the pages themselves."""
    enc = str(tiny_siglip)
    with ExitStack() as stack:
        stores: dict[str, str] = {}
        if where == "ray-shared":
            from tests.qdrant_rest import qdrant_server

            stores = {"database_url": request.getfixturevalue("pg_url"),
                      "qdrant_url": stack.enter_context(qdrant_server())[0]}
        _kill_and_rerun(tmp_path, enc, kill_after_pages, where != "local", stores, expected)


def _kill_and_rerun(tmp_path: Path, enc: str, kill_after_pages: int, on_ray: bool, stores: dict[str, str],
                    expected: dict) -> None:
    crashed = tmp_path / "crashed"
    env = cli_env(crashed, enc, **{f"PAGELENS_{k.upper()}": v for k, v in stores.items()})
    ray = ("--ray", "local") if on_ray else ()
    proc = popen("ingest", *ray, *map(str, INPUTS), env=env)
    deadline = time.monotonic() + 180
    pages_in_catalog = _page_counter(crashed / "catalog.db", stores.get("database_url"))
    while pages_in_catalog() < kill_after_pages:
        assert proc.poll() is None, "the run ended before it could be killed; make the window larger"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = _state(crashed, enc, **stores)
    # killed mid-batch (with shared stores the workers may still finish writing pages as the driver dies, but no
    # document can be complete: only the driver completes documents)
    assert interrupted["total_points"] < 157 or stores, "killed mid-batch"
    assert any(d[2] == "partial" for d in interrupted["docs"]), "a document was cut mid-way"

    again = pagelens("ingest", *ray, *map(str, INPUTS), "--report", str(tmp_path / "r.json"), env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _state(crashed, enc, **stores) == expected
    statuses = [f["status"] for f in json.loads((tmp_path / "r.json").read_text())["files"]]
    assert "ingested" in statuses
