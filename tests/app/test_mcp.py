"""PageLens over MCP (issue 20, item 1), driven by the official SDK's own client: over Streamable HTTP at the API's
/mcp on loopback (each request as its key), and over stdio against a real ``pagelens mcp`` subprocess."""

from __future__ import annotations

import asyncio
import base64
import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from app.api import create_app
from app.service import Service
from tests.conftest import PDFS, ROOT, make_settings
from tests.ingest.clirun import cli_env
from tests.vlm.chat_server import serve

READ_TOOLS = {"search", "ask", "locate", "list_documents", "get_page"}
SCHEMA = {"type": "object", "properties": {"function": {"type": "string", "description": "Name of a function"}}}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], dict[str, str]]]:
    """A data dir: refcard-a4.pdf in collection 'a', R-data.pdf in 'b'; keys: an admin, a reader of 'a', a writer
    of 'a'. Yields (data dir, {name: doc_id}, {key name: key})."""
    data = tmp_path_factory.mktemp("mcp") / "data"
    svc = Service(make_settings(data, None, vlm_backend="words"))
    try:
        a = svc.ingest([PDFS / "refcard-a4.pdf"], collection="a").files[0]
        b = svc.ingest([PDFS / "R-data.pdf"], collection="b").files[0]
        assert a.status == b.status == "ingested"
        keys = {name: svc.create_key(name, role, cols).key for name, role, cols in
                (("boss", "admin", None), ("reader-a", "reader", ["a"]), ("writer-a", "writer", ["a"]))}
    finally:
        svc.close()
    yield data, {"refcard": a.doc_id, "rdata": b.doc_id}, keys


def _copy(pristine: Path, to: Path) -> Path:
    """A copy of the store for one process to own (the embedded stores belong to one process at a time)."""
    shutil.copytree(pristine, to)
    return to


@pytest.fixture(scope="module")
def api(store: tuple[Path, dict[str, str], dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = _copy(store[0], tmp_path_factory.mktemp("api") / "data")
    svc = Service(make_settings(data, None, vlm_backend="words"))
    with serve(create_app(service=svc)) as url:
        yield url


def _http(url: str, key: str | None) -> Any:
    headers = {"X-API-Key": key} if key else {}
    return streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60))


async def _session(url: str, key: str | None, calls: list[tuple[str, dict[str, Any]]]) -> tuple[set[str], list[Any]]:
    from mcp.client.session import ClientSession

    async with _http(url, key) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        tools = {t.name for t in (await s.list_tools()).tools}
        return tools, [await s.call_tool(name, args) for name, args in calls]


def run(url: str, key: str | None, *calls: tuple[str, dict[str, Any]]) -> tuple[set[str], list[Any]]:
    return asyncio.run(_session(url, key, list(calls)))


def _png(result: Any) -> Image.Image:
    image = next(c for c in result.content if c.type == "image")
    assert image.mime_type == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(image.data)))


def test_http_tools_answer_with_boxes_as_the_key_sends(api: str, store: Any) -> None:
    _, docs, keys = store
    tools, (found, asked, page, located, missing) = run(
        api, keys["boss"],
        ("search", {"question": "matrix inverse", "k": 3}),
        ("ask", {"question": "inverse of a matrix", "collection": "a"}),
        ("get_page", {"document": docs["refcard"], "page": 2, "boxes": [[0.1, 0.1, 0.4, 0.2]], "width": 400}),
        ("locate", {"document": docs["refcard"], "page": 2, "value": "matrix multiplication"}),
        ("locate", {"document": "no-such.pdf", "page": 1, "value": "x"}))
    assert tools == READ_TOOLS | {"extract"}
    pages = found.structured_content["pages"]
    assert pages and pages[0]["doc_id"] == docs["refcard"] and pages[0]["page"] >= 1
    assert any(w["bbox"] for p in pages for w in p["words"]), "matched words carry their boxes"
    ev = asked.structured_content["evidence"]
    assert asked.structured_content["found"] and ev and ev[0]["bbox"] and ev[0]["status"] == "verified"
    assert ev[0]["document"].endswith("refcard-a4.pdf") and ev[0]["doc_id"] == docs["refcard"]
    assert not page.is_error and _png(page).size[0] == 400
    assert located.structured_content["status"] == "verified" and located.structured_content["boxes"]
    assert missing.is_error and missing.structured_content["error"]["code"] == "not_found"
    assert missing.content[0].text.startswith("error (not_found): ")


def test_http_reader_of_one_collection_sees_only_it_and_only_read_tools(api: str, store: Any) -> None:
    _, docs, keys = store
    tools, (listed, found, page, extracted) = run(
        api, keys["reader-a"],
        ("list_documents", {}),
        ("search", {"question": "read.table spreadsheet data import", "k": 10}),
        ("get_page", {"document": docs["rdata"], "page": 1}),
        ("extract", {"schema": SCHEMA, "documents": [docs["refcard"]]}))
    assert tools == READ_TOOLS, "a reader is offered the read tools only"
    assert [d["doc_id"] for d in listed.structured_content["documents"]] == [docs["refcard"]]
    assert all(p["doc_id"] == docs["refcard"] for p in found.structured_content["pages"])
    assert page.is_error and page.structured_content["error"]["code"] == "not_found", "b's page is not there"
    assert extracted.is_error and extracted.structured_content["error"]["code"] == "forbidden"


def test_http_writer_extracts_and_a_missing_key_is_refused(api: str, store: Any) -> None:
    _, docs, keys = store
    tools, (extracted,) = run(api, keys["writer-a"], ("extract", {"schema": SCHEMA, "documents": [docs["refcard"]]}))
    assert "extract" in tools and not extracted.is_error, extracted.content
    assert {f["path"] for f in extracted.structured_content["fields"]} == {"function"}
    r = httpx.post(f"{api}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_stdio_subprocess_lists_and_calls_every_tool(store: Any, tmp_path: Path) -> None:
    _, docs, keys = store
    env = cli_env(_copy(store[0], tmp_path / "data"), None, PAGELENS_VLM__BACKEND="words")

    async def session(extra: dict[str, str]) -> tuple[set[str], list[Any]]:
        params = StdioServerParameters(command=sys.executable, args=["-m", "app.cli", "mcp"], env={**env, **extra},
                                       cwd=str(ROOT))
        async with Client(params, read_timeout_seconds=120) as c:
            tools = {t.name for t in (await c.list_tools()).tools}
            calls = [("list_documents", {"collection": "a"}), ("search", {"question": "matrix inverse"}),
                     ("ask", {"question": "inverse of a matrix", "conversation_id": "new"}),
                     ("locate", {"document": docs["refcard"], "page": 2, "value": "matrix multiplication"}),
                     ("get_page", {"document": docs["refcard"], "page": 1}),
                     ("extract", {"schema": SCHEMA, "documents": [docs["refcard"]]})]
            return tools, [await c.call_tool(n, a) for n, a in calls if n in tools]

    tools, (listed, found, asked, located, page, extracted) = asyncio.run(session({}))
    assert tools == READ_TOOLS | {"extract"}, "the data dir's owner: every tool"
    assert next(d["name"] for d in listed.structured_content["documents"]).endswith("refcard-a4.pdf")
    assert found.structured_content["pages"][0]["doc_id"] == docs["refcard"]
    assert asked.structured_content["conversation_id"] and asked.structured_content["evidence"][0]["bbox"]
    assert located.structured_content["status"] == "verified"
    assert _png(page).size[0] == 1000
    assert not extracted.is_error and extracted.structured_content["fields"]

    tools, results = asyncio.run(session({"PAGELENS_MCP_KEY": keys["reader-a"]}))
    assert tools == READ_TOOLS
    assert all(p["doc_id"] == docs["refcard"] for p in results[1].structured_content["pages"])
