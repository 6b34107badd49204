"""Hardening of the HTTP API (issue #11): bounded page images, auth and body limits before the body is read,
security headers, bounded extraction schemas, image sniffing by content, file names, store failures and health,
client file names, doc refs everywhere, API wording of password errors, HTML-safe UI, stores opened at start."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.service import Service
from schemas.errors import InputError, RenderFailed, StoreError, StoreLocked, UnsupportedType
from schemas.settings import Settings
from tests.conftest import BADPDF, PDFS, make_settings
from tests.vlm.chat_server import chat_server, serve

KEY = {"X-API-Key": "s3cret"}


def _settings(tmp_path: Path) -> Settings:
    s = make_settings(tmp_path / "data", None)
    s.api_key = "s3cret"
    s.max_upload_mb = 1
    return s


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(tmp_path))) as c:
        yield c


def _pdf(path: Path, width: float = 300, height: float = 400, text: str = "hello hardening") -> Path:
    doc = pymupdf.open()
    page = doc.new_page(width=width, height=height)
    page.insert_text((20, 40), text)
    doc.save(str(path))
    doc.close()
    return path


def _upload(c: TestClient, *files: tuple[str, bytes], **form: str) -> Any:
    return c.post("/documents", params={"wait": "true"}, files=[("files", (n, b, "application/pdf")) for n, b in files],
                  data=form, headers=KEY)


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    return w, h


def _doc_id(c: TestClient, path: Path) -> str:
    r = _upload(c, (path.name, path.read_bytes()))
    assert r.status_code == 200, r.text
    return str(r.json()["files"][0]["doc_id"])


# -- 1. page images are bounded ------------------------------------------------------------------------------


def test_tall_page_image_is_capped_in_pixels(client: TestClient, tmp_path: Path) -> None:
    doc = _doc_id(client, _pdf(tmp_path / "tall.pdf", 500, 20000))
    for width in (2600, 3000, 4000):
        t0 = time.monotonic()
        r = client.get(f"/documents/{doc}/pages/1.png", params={"width": width}, headers=KEY)
        assert r.status_code == 200, (width, r.text)
        w, h = _png_size(r.content)
        assert w * h <= 12_000_000 and h > w, (width, w, h)
        assert time.monotonic() - t0 < 10


def test_render_png_scales_down_to_the_pixel_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from store import pages

    monkeypatch.setattr(pages, "MAX_PIXELS", 1_000_000)
    w, h = _png_size(pages.render_png(_pdf(tmp_path / "p.pdf", 500, 5000), 1, width=1000))
    assert w * h <= 1_000_000 and abs(h / w - 10) < 0.2, (w, h)


def test_too_many_boxes_and_bad_parameters_are_4xx(client: TestClient, tmp_path: Path) -> None:
    from schemas.coords import BBox
    from store import pages

    doc = _doc_id(client, _pdf(tmp_path / "p.pdf"))
    many = ";".join("0.1,0.1,0.2,0.2" for _ in range(201))
    r = client.get(f"/documents/{doc}/pages/1.png", params={"boxes": many}, headers=KEY)
    assert r.status_code == 400 and "boxes" in r.json()["error"]["message"]
    assert client.get(f"/documents/{doc}/pages/1.png", params={"boxes": ";".join(["0.1,0.1,0.2,0.2"] * 200)},
                      headers=KEY).status_code == 200
    for params in ({"width": 0}, {"width": 100_000}, {"width": "wide"}):
        assert client.get(f"/documents/{doc}/pages/1.png", params=params, headers=KEY).status_code == 422, params
    for boxes in ("nan,0,1,1", "0,0,inf,1", "0.5,0.5,0.1,0.1", "a,b,c,d"):
        assert client.get(f"/documents/{doc}/pages/1.png", params={"boxes": boxes}, headers=KEY).status_code == 400
    assert client.get(f"/documents/{doc}/pages/x.png", headers=KEY).status_code == 422
    with pytest.raises(InputError, match="at most 200"):
        pages.render_png(_pdf(tmp_path / "q.pdf"), 1, boxes=[(BBox.of([0.1, 0.1, 0.2, 0.2]), "match")] * 201)


def test_mupdf_error_while_rendering_is_422(client: TestClient, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """MuPDF's error on a malformed page is RenderFailed (the renderer's own code; the API's sandboxed renderers
    answer it as 422, tests/app/test_render_bounds.py)."""
    from store.pages import render_png

    pdf = _pdf(tmp_path / "p.pdf")

    def broken(*_a: Any, **_k: Any) -> None:
        raise pymupdf.mupdf.FzErrorLimit("too many nested objects")

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", broken)
    with pytest.raises(RenderFailed, match="page 1 cannot be drawn"):
        render_png(pdf, 1, width=200)


# -- 2. auth and body size before the body; security headers --------------------------------------------------


async def _reading_app(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads the whole body, then answers 200 (a disconnect mid-body raises, as Starlette does)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RuntimeError("client disconnected")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _through_guard(headers: dict[str, str], chunks: list[bytes], max_body: int = 1000) -> tuple[int, int, dict]:
    """(status, body bytes handed to the app's receive, response headers) of one POST /documents."""
    from app.access import Gatekeeper
    from app.api import RequestGuard
    from schemas.settings import AccessSettings

    gate = Gatekeeper(None, bootstrap_key="s3cret", local_token=None)  # no catalog key is ever looked up here
    guard = RequestGuard(_reading_app, gate=gate, max_body=max_body, limits=AccessSettings(),
                         on_denied=lambda *_: None)
    handed, sent = [0], []

    async def receive() -> dict[str, Any]:
        if not chunks:
            return {"type": "http.disconnect"}
        body = chunks.pop(0)
        handed[0] += len(body)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/documents", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(guard(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], handed[0], {k.decode(): v.decode() for k, v in start["headers"]}


def test_guard_rejects_before_reading_the_body() -> None:
    body = [b"x" * 100] * 5
    assert _through_guard({"content-length": "500"}, list(body))[:2] == (401, 0)
    assert _through_guard({"x-api-key": "wrong", "content-length": "500"}, list(body))[:2] == (401, 0)
    assert _through_guard({"x-api-key": "s3cret", "content-length": "5000"}, list(body))[:2] == (413, 0)
    assert _through_guard({"x-api-key": "s3cret", "content-length": "12x"}, list(body))[:2] == (400, 0)
    assert _through_guard({"x-api-key": "s3cret", "content-length": "500"}, list(body))[:2] == (200, 500)


def test_guard_cuts_a_streamed_body_at_the_limit() -> None:
    status, handed, headers = _through_guard({"x-api-key": "s3cret"}, [b"x" * 400] * 50)  # chunked, 20 KB
    assert status == 413 and handed <= 1200, handed
    assert headers["x-content-type-options"] == "nosniff"


def test_real_server_answers_401_and_413_without_the_body(tmp_path: Path) -> None:
    def first_line(extra_headers: str) -> bytes:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /documents HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         + extra_headers.encode() + b"Content-Length: 1073741824\r\n\r\n" + b"x" * 1024)
            return sock.recv(200).split(b"\r\n")[0]  # times out (fails) if the server waits for the 1 GB

    with serve(create_app(_settings(tmp_path))) as url:
        host, port = url.removeprefix("http://").split(":")
        assert b" 401 " in first_line("")
        assert b" 413 " in first_line("X-API-Key: s3cret\r\n")


def test_upload_over_the_body_limit_is_413(client: TestClient) -> None:
    r = client.post("/documents", content=b"x" * (6 * 2**20), headers={**KEY, "content-type": "application/pdf"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_security_headers_and_constant_time_key(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.access

    for r in (client.get("/health"), client.get("/documents"), client.get("/documents", headers=KEY),
              client.get("/no-such-route", headers=KEY)):
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["content-security-policy"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "content-security-policy" not in docs.headers, "/docs runs Swagger UI's inline start-up script"
    assert "cdn." not in docs.text and "/docs-assets/swagger-ui-bundle.js" in docs.text, "no CDN: works offline"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        got = client.get(f"/docs-assets/{asset}")  # public, like /docs itself
        assert got.status_code == 200 and len(got.content) > 10_000
    calls: list[tuple[bytes, bytes]] = []
    monkeypatch.setattr(app.access.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or a == b)
    assert client.get("/documents", headers=KEY).status_code == 200 and calls


# -- 3. extraction schemas are bounded; no VLM answers first -------------------------------------------------


def _ref_bomb(levels: int = 16) -> dict[str, Any]:
    defs: dict[str, Any] = {"D0": {"type": "string"}}
    for i in range(1, levels + 1):
        defs[f"D{i}"] = {"type": "object", "properties": {"a": {"$ref": f"#/$defs/D{i - 1}"},
                                                          "b": {"$ref": f"#/$defs/D{i - 1}"}}}
    return {"type": "object", "$defs": defs, "properties": {"x": {"$ref": f"#/$defs/D{levels}"}}}


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        node = {"type": "object", "properties": {"x": node}}
    return node


@pytest.mark.parametrize(("schema", "words"), [
    (_ref_bomb(), "expands"),
    (_deep(300), "deeper"),
    ({"type": "object", "properties": {f"p{i}": {} for i in range(20_000)}}, "KB"),
    ({"type": "object", "properties": {f"p{i}": {} for i in range(1500)}}, "properties"),
    ({"type": "object", "$defs": {f"D{i}": {"$ref": f"#/$defs/D{i - 1}"} for i in range(1, 900)} | {"D0": {}},
      "properties": {"x": {"$ref": "#/$defs/D899"}}}, "chain"),
])
def test_oversized_schemas_are_rejected_fast(schema: dict[str, Any], words: str) -> None:
    from vlm.user_schema import load_schema

    t0 = time.monotonic()
    with pytest.raises(InputError, match=words):
        load_schema(schema)
    assert time.monotonic() - t0 < 2


def test_schema_file_over_the_size_limit(tmp_path: Path) -> None:
    from vlm.user_schema import load_schema

    big = tmp_path / "big.json"
    big.write_text('{"type": "object", "description": "' + "x" * 300_000 + '"}')
    with pytest.raises(InputError, match="KB"):
        load_schema(str(big))
    ok, _ = load_schema({"type": "object", "$defs": {"A": {"type": "object", "properties": {"z": {"type": "number"}}}},
                         "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "#/$defs/A"}}})
    assert ok["properties"]["a"] == {"$ref": "#/$defs/A"}


def test_extract_without_vlm_is_503_before_the_schema_is_read(client: TestClient, tmp_path: Path) -> None:
    doc = _doc_id(client, _pdf(tmp_path / "p.pdf"))
    for schema in ({"type": "array"}, _ref_bomb()):
        t0 = time.monotonic()
        r = client.post("/extract", json={"schema": schema, "doc_ids": [doc]}, headers=KEY)
        assert r.status_code == 503 and time.monotonic() - t0 < 5, r.text


def test_extract_api_rejects_a_schema_bomb_with_400(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None)
    with chat_server() as srv:
        s.vlm_url = srv.url
        with TestClient(create_app(s)) as c:
            doc = _upload(c, ("p.pdf", _pdf(tmp_path / "p.pdf").read_bytes())).json()["files"][0]["doc_id"]
            for schema in (_ref_bomb(), _deep(300)):
                r = c.post("/extract", json={"schema": schema, "doc_ids": [doc]})
                assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", r.text


# -- 4. images only by their bytes -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "looks"), [
    ("page.png", b"<!DOCTYPE html><html><body><h1>hi</h1></body></html>", "HTML"),
    ("page.jpg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
    ("page.png", b"PK\x03\x04\x14\x00\x00\x00mimetypeapplication/epub+zip", "EPUB"),
    ("page.tif", b"just some text", "not a PNG, JPEG or TIFF"),
])
def test_image_suffix_without_image_bytes_is_unsupported(tmp_path: Path, name: str, data: bytes, looks: str) -> None:
    from ingest.pdf import sniff_kind

    (tmp_path / name).write_bytes(data)
    with pytest.raises(UnsupportedType, match=looks):
        sniff_kind(tmp_path / name)


def test_real_images_and_pdfs_still_sniffed_by_content(tmp_path: Path) -> None:
    from PIL import Image

    from ingest.pdf import sniff_kind

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.jpeg", format="JPEG")
    _pdf(tmp_path / "c.png")  # a PDF named .png is a PDF
    assert [sniff_kind(tmp_path / n) for n in ("a.png", "b.jpeg", "c.png")] == ["image", "image", "pdf"]


def test_html_named_png_upload_fails_as_unsupported(client: TestClient) -> None:
    r = _upload(client, ("x.png", b"<html><body><img src=x onerror=alert(1)></body></html>"))
    f = r.json()["files"][0]
    assert r.status_code == 200 and f["status"] == "failed" and f["error"]["code"] == "unsupported_type"
    assert "HTML" in f["error"]["message"]


# -- 5. names, render errors, store errors and health -------------------------------------------------------


def test_long_and_nul_file_names_are_4xx(client: TestClient, tmp_path: Path) -> None:
    data = _pdf(tmp_path / "p.pdf").read_bytes()
    long_ok = "a" * 250 + ".pdf"
    r = _upload(client, (long_ok, data))
    assert r.status_code == 200 and r.json()["files"][0]["path"] == long_ok, r.text
    r = _upload(client, ("b" * 260 + ".pdf", data))
    assert r.status_code == 400 and "`files`" in r.json()["error"]["message"]
    body = (b'--B\r\nContent-Disposition: form-data; name="files"; filename="a\x00b.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n" + data + b"\r\n--B--\r\n")
    r = client.post("/documents", content=body, headers={**KEY, "content-type": "multipart/form-data; boundary=B"})
    assert r.status_code == 400 and "`files`" in r.json()["error"]["message"], r.text


def test_store_errors_are_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = client.app.state.service  # type: ignore[attr-defined]

    def locked(*_a: Any, **_k: Any) -> None:
        raise StoreLocked("the embedded vector store is open in another PageLens process")

    monkeypatch.setattr(svc, "search", locked)
    r = client.post("/search", json={"question": "x"}, headers=KEY)
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_locked"


def test_health_probes_the_stores_and_hides_counts_without_key(client: TestClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert "documents" not in r.json() and "pages" not in r.json()
    assert client.get("/health", headers=KEY).json()["documents"] == 0
    svc = client.app.state.service  # type: ignore[attr-defined]

    def down(*_a: Any, **_k: Any) -> None:
        raise StoreError("connection refused")

    monkeypatch.setattr(svc.index, "count", down)
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "degraded" and list(r.json()["failed"]) == ["vector_index"]
    from sqlalchemy import create_engine

    monkeypatch.setattr(svc.catalog, "engine", create_engine(f"sqlite:///{svc.settings.data_dir}/gone/no/c.db"))
    assert set(client.get("/health").json()["failed"]) == {"catalog", "vector_index"}


# -- 6, 7, 8. client names, doc refs, password wording ------------------------------------------------------


@pytest.mark.corpus
def test_upload_keeps_the_client_name(client: TestClient) -> None:
    r = _upload(client, ("refcard-a4.pdf", (PDFS / "refcard-a4.pdf").read_bytes()),
                ("R-data.pdf", (PDFS / "R-data.pdf").read_bytes()))
    files = r.json()["files"]
    assert [f["path"] for f in files] == ["refcard-a4.pdf", "R-data.pdf"], files
    doc = client.get("/documents/refcard-a4.pdf", headers=KEY)
    assert doc.status_code == 200 and doc.json()["doc_id"] == files[0]["doc_id"]


@pytest.mark.corpus
def test_search_and_ask_resolve_doc_refs_like_everywhere_else(client: TestClient) -> None:
    r = _upload(client, ("refcard-a4.pdf", (PDFS / "refcard-a4.pdf").read_bytes()),
                ("R-data.pdf", (PDFS / "R-data.pdf").read_bytes()))
    card = r.json()["files"][0]["doc_id"]
    for ref in ("refcard-a4.pdf", card[:8], card):
        hits = client.post("/search", json={"question": "data matrix", "k": 5, "doc_ids": [ref]}, headers=KEY)
        assert hits.status_code == 200 and hits.json() and {h["doc_id"] for h in hits.json()} == {card}, ref
    r = client.post("/search", json={"question": "data", "doc_ids": ["nope.pdf"]}, headers=KEY)
    assert r.status_code == 404 and "nope.pdf" in r.json()["error"]["message"]


def test_ask_with_an_unknown_doc_ref_is_404(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None)
    with chat_server() as srv:
        s.vlm_url = srv.url
        with TestClient(create_app(s)) as c:
            _upload(c, ("p.pdf", _pdf(tmp_path / "p.pdf").read_bytes()))
            r = c.post("/ask", json={"question": "hello", "doc_ids": ["nope.pdf"]})
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text


@pytest.mark.corpus
def test_password_errors_name_the_form_field(client: TestClient) -> None:
    enc = BADPDF / "files/pypdf/encryption__r4-aes-user-password.pdf"
    for form, code in (({}, "password_required"), ({"password": "wrong"}, "wrong_password")):
        f = _upload(client, (enc.name, enc.read_bytes()), **form).json()["files"][0]
        assert f["error"]["code"] == code and f["path"] == enc.name
        assert "`password` form field" in f["error"]["message"] and "--password" not in f["error"]["message"]


# -- 10. the API holds its stores from the start -------------------------------------------------------------


def test_create_app_opens_the_stores_and_fails_fast_when_locked(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None)
    svc = Service(s)
    create_app(service=svc)
    assert "catalog" in svc.__dict__ and "index" in svc.__dict__
    other = Service(make_settings(tmp_path / "data", None))
    with pytest.raises(StoreLocked, match="another PageLens process"):
        create_app(service=other)
    other.close()
    svc.close()


def test_uploads_keep_the_clients_file_name(client: TestClient, tmp_path: Path) -> None:
    f = _upload(client, ("liboctave.pdf", _pdf(tmp_path / "x.pdf").read_bytes())).json()["files"][0]
    assert f["status"] == "ingested" and f["path"] == "liboctave.pdf"
    r = client.get("/documents/liboctave.pdf", headers=KEY)
    assert r.status_code == 200 and r.json()["name"] == "liboctave.pdf" and r.json()["names"] == ["liboctave.pdf"]
    hits = client.post("/search", json={"question": "hardening"}, headers=KEY).json()
    assert [h["path"] for h in hits] == ["liboctave.pdf"]


@pytest.mark.corpus
def test_an_encrypted_upload_renders_with_its_password_given_once(client: TestClient) -> None:
    enc = BADPDF / "files/pypdf/encryption__r4-aes-user-password.pdf"
    f = _upload(client, (enc.name, enc.read_bytes()), password="asdfzxcv").json()["files"][0]
    assert f["status"] == "ingested", f
    r = client.get(f"/documents/{f['doc_id']}/pages/1.png?width=200", headers=KEY)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


# -- 11. every request field is bounded; JSON bodies are small (issue 17, item 4) -----------------------------


def test_request_fields_and_json_bodies_are_bounded(client: TestClient, tmp_path: Path) -> None:
    import time

    t = time.monotonic()
    many = client.post("/search", json={"question": "x", "doc_ids": [f"{i:064x}" for i in range(200_000)]},
                       headers=KEY)
    assert many.status_code == 413 and "JSON request body" in many.json()["error"]["message"]
    huge = client.post("/locate", content=b'{"doc_id": "x", "page": 1, "value": "' + b"a" * (50 * 2**20) + b'"}',
                       headers={**KEY, "content-type": "application/json"})
    assert huge.status_code == 413
    assert time.monotonic() - t < 10, "refused before the work, not after"
    refs = client.post("/search", json={"question": "x", "doc_ids": ["a"] * 1001}, headers=KEY)
    assert refs.status_code == 422 and "doc_ids" in refs.json()["error"]["message"]
    long_value = client.post("/locate", json={"doc_id": "x", "page": 1, "value": "a" * 10_001}, headers=KEY)
    assert long_value.status_code == 422
    assert client.post("/locate", json={"doc_id": "x", "page": 10**20, "value": "a"}, headers=KEY).status_code == 422
    assert client.post("/search", json={"question": "x", "collection": "c" * 10_000}, headers=KEY).status_code == 422
    pdf = _pdf(tmp_path / "n.pdf").read_bytes()
    for bad in ("default\u202e", "a\x00b", " padded", "c" * 201, "zero\u200bwidth"):
        r = _upload(client, ("n.pdf", pdf), collection=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", (repr(bad), r.text)
    assert client.get("/documents", headers=KEY).json() == [], "nothing was stored under a bad name"


def test_health_is_degraded_when_the_stores_files_go_under_a_running_server(tmp_path: Path) -> None:
    """A catalog file overwritten, or the vector store's folder deleted, under a running server: the open handles
    keep answering from what they hold, so only /health can say so before the data is lost (issue 17, item 4)."""
    import shutil

    s = make_settings(tmp_path / "data", None)
    with TestClient(create_app(s)) as c:
        pdf = _pdf(tmp_path / "h.pdf")
        assert c.post("/documents", params={"wait": "true"}, files=[("files", (pdf.name, pdf.read_bytes()))]
                      ).status_code == 200
        assert c.get("/health").json()["status"] == "ok"
        shutil.rmtree(s.qdrant_path)
        r = c.get("/health")
        assert r.status_code == 503 and "gone" in r.json()["failed"]["vector_index"]
        (s.data_dir / "catalog.db").write_bytes(b"not a database" * 100)
        assert "no longer an SQLite database" in c.get("/health").json()["failed"]["catalog"]
