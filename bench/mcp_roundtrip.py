"""MCP ``search`` round trip against the plain search, whole processes, the defaults (issue 20's figure: ≤ 50 ms
above the plain search):

- HTTP: ``pagelens serve`` in its own process; ``POST /search`` with httpx vs the MCP ``search`` tool at ``/mcp``
  through the SDK's client (one session, Streamable HTTP), the same questions, p50/p95;
- stdio: ``Service.search`` in this process vs the MCP ``search`` tool of a ``pagelens mcp`` subprocess over the
  same data dir (the SDK's stdio client), p50/p95.

    python bench/mcp_roundtrip.py [--n 100] [--data DIR]   # DIR: an ingested data dir (default: the corpus PDFs)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT.parent / "shared" / "corpus" / "pdfs"
QUESTIONS = ["How do I read a spreadsheet into R?", "matrix inverse", "relational database access",
             "binary files", "linear models and anova", "plotting a histogram", "regular expressions",
             "import data from SPSS", "apply a function over a list", "factor levels"]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] * 1000


WARM_UP = 5  # the first calls load the text encoder


def timed(call: Callable[[str], Any], n: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``call(question)`` after the warm-up calls."""
    out = []
    for i in range(n + WARM_UP):
        t = time.perf_counter()
        call(QUESTIONS[i % len(QUESTIONS)])
        if i >= WARM_UP:
            out.append(time.perf_counter() - t)
    return out


async def timed_search(session: Any, n: int) -> list[float]:
    """``timed`` for the MCP ``search`` tool of a connected client or session."""
    out = []
    for i in range(n + WARM_UP):
        t = time.perf_counter()
        res = await session.call_tool("search", {"question": QUESTIONS[i % len(QUESTIONS)], "k": 5})
        assert not res.is_error, res.content
        if i >= WARM_UP:
            out.append(time.perf_counter() - t)
    return out


def row(label: str, xs: list[float]) -> str:
    return f"| {label} | {pct(xs, 50):.1f} | {pct(xs, 95):.1f} | {statistics.mean(xs) * 1000:.1f} |"


def env_for(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update({"PAGELENS_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
                "PAGELENS_VLM__BACKEND": "words"})
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_figures(data: Path, n: int) -> tuple[list[float], list[float]]:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env_for(data),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as http:

            def search(q: str) -> None:
                r = http.post("/search", json={"question": q, "k": 5})
                assert r.status_code == 200, r.text

            plain = timed(search, n)

        async def mcp_calls() -> list[float]:
            async with (streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(timeout=60)) as (rd, wr),
                        ClientSession(rd, wr) as s):
                await s.initialize()
                return await timed_search(s, n)

        return plain, asyncio.run(mcp_calls())
    finally:
        proc.terminate()
        proc.wait(30)


def stdio_figures(data: Path, n: int) -> tuple[list[float], list[float]]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from app.service import Service
    from schemas.settings import load_settings

    os.environ.update(env_for(data))
    with Service(load_settings()) as svc:
        plain = timed(lambda q: svc.search(q, k=5), n)

    async def mcp_calls() -> list[float]:
        params = StdioServerParameters(command=sys.executable, args=["-m", "app.cli", "mcp"], env=env_for(data),
                                       cwd=str(ROOT))
        async with Client(params, read_timeout_seconds=300) as c:
            return await timed_search(c, n)

    return plain, asyncio.run(mcp_calls())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    data = args.data
    if data is None:
        data = Path(tempfile.mkdtemp()) / "data"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "app.cli", "ingest", str(PDFS)], env=env_for(data), cwd=ROOT,
                       check=True, capture_output=True)
        print(f"ingested {PDFS} (defaults) in {time.perf_counter() - t:.1f} s")
    http_plain, http_mcp = http_figures(data, args.n)
    stdio_plain, stdio_mcp = stdio_figures(data, args.n)
    print(f"{args.n} searches each (k=5), after {WARM_UP} warm-up calls; ms")
    print("| path | p50 | p95 | mean |")
    print("|---|---|---|---|")
    for label, xs in [("HTTP: POST /search", http_plain), ("HTTP: MCP search at /mcp", http_mcp),
                      ("in-process Service.search", stdio_plain), ("stdio: MCP search (pagelens mcp)", stdio_mcp)]:
        print(row(label, xs))
    above = {f"{way} p{p}": pct(m, p) - pct(base, p) for way, m, base in (("HTTP", http_mcp, http_plain),
                                                                         ("stdio", stdio_mcp, stdio_plain))
             for p in (50, 95)}
    print("MCP above plain: " + ", ".join(f"{k} {v:+.1f} ms" for k, v in above.items()))


if __name__ == "__main__":
    main()
