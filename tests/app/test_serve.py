"""``pagelens serve`` against slow and many clients (issue 17, item 4): a client sending its headers byte by byte is
closed after the header timeout, connections over the cap are answered at once, and the API keeps answering."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from store.owner import running_server
from tests.conftest import ROOT
from tests.ingest.clirun import cli_env
from tests.serving import wait_until
from tests.vlm.chat_server import free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int]]:
    data, port = tmp_path / "data", free_port()
    env = cli_env(data, None, PAGELENS_VLM__CAPTIONS="false", PAGELENS_SERVER__HEADER_TIMEOUT_S="1",
                  PAGELENS_SERVER__MAX_CONNECTIONS="40")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: running_server(data) is not None, proc, "pagelens serve")
        yield f"http://127.0.0.1:{port}", port
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert out.count("Traceback") == 0, out[-2000:]


def _slow(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x")  # and never the rest
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket) -> bool:
    """Whether the server let this connection go within 3 s: closed it (EOF, reset) or answered it (a 503 over
    the cap); False when it still holds it, waiting for the rest of the headers."""
    s.settimeout(3)
    try:
        s.recv(1024)  # b"" (closed) or an answer
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_header_clients_are_cut_off_and_the_api_keeps_answering(served: tuple[str, int]) -> None:
    url, port = served
    socks = _slow(port, 30)
    try:
        t = time.monotonic()
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200, "answers beside 30 slow clients"
        assert time.monotonic() - t < 2
        time.sleep(1.5)  # past the 1 s header timeout
        assert all(_closed_by_server(s) for s in socks), "each slow client was closed by the server"
    finally:
        for s in socks:
            s.close()


def test_connections_over_the_cap_are_answered_at_once_then_freed(served: tuple[str, int]) -> None:
    url, port = served
    socks = _slow(port, 60)  # over the cap of 40
    try:
        r = httpx.get(f"{url}/health", timeout=5)
        assert r.status_code in (200, 503), r.status_code  # never a hang
        time.sleep(1.5)  # the slow ones are cut off
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        for s in socks:
            s.close()
