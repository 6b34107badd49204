"""Page images are drawn in sandboxed renderers with a time and memory bound and a cap in flight: a hostile page
costs its own request, never the API (issue 17, item 4)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from tests.conftest import make_settings


def _slow_pdf(path: Path, rects: int = 1_500_000) -> Path:
    """A small file whose page takes ~1 s to draw at any size: a million and a half filled paths."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=300, height=400)
    page.insert_text((10, 10), "slow page")
    ops = b"".join(b"%d %d 1 1 re f\n" % (i % 300, (i // 300) % 400) for i in range(rects))
    doc.update_stream(page.get_contents()[0], ops, compress=True)
    doc.save(path, deflate=True)
    return path


def _pdf(path: Path) -> Path:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page(width=300, height=400).insert_text((20, 40), "normal page")
    doc.save(path)
    return path


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    s = make_settings(tmp_path / "data", None)
    s.server.render_timeout_s = 0.3
    s.server.render_wait_s = 0.5
    s.server.renders_in_flight = 2
    with TestClient(create_app(s)) as c:
        yield c


def _doc(c: TestClient, path: Path) -> str:
    r = c.post("/documents", params={"wait": "true"}, files=[("files", (path.name, path.read_bytes()))])
    assert r.status_code == 200, r.text
    return str(r.json()["files"][0]["doc_id"])


def test_a_page_that_draws_too_long_is_stopped_and_the_rest_answers(client: TestClient, tmp_path: Path) -> None:
    slow, normal = _doc(client, _slow_pdf(tmp_path / "slow.pdf")), _doc(client, _pdf(tmp_path / "n.pdf"))
    t = time.monotonic()
    r = client.get(f"/documents/{slow}/pages/1.png?width=50")
    assert r.status_code == 422 and r.json()["error"]["code"] == "render_failed", r.text
    assert "took over 0.3 s" in r.json()["error"]["message"]
    assert time.monotonic() - t < 5
    # hostile renders in flight: the others are answered (busy at worst, never a hang), /health and search at once
    answers: list[int] = []
    hostile = [threading.Thread(target=lambda: answers.append(
        client.get(f"/documents/{slow}/pages/1.png?width=50").status_code)) for _ in range(6)]
    for th in hostile:
        th.start()
    t = time.monotonic()
    assert client.get("/health").status_code == 200
    assert client.post("/search", json={"question": "normal page"}).json()[0]["doc_id"] == normal
    assert time.monotonic() - t < 10, "the API kept answering beside the hostile renders (it took 73 s before)"
    for th in hostile:
        th.join(30)
    assert set(answers) <= {422, 503} and len(answers) == 6, answers
    ok = client.get(f"/documents/{normal}/pages/1.png?width=100")
    assert ok.status_code == 200 and ok.content.startswith(b"\x89PNG"), "a fresh renderer took the killed one's place"
