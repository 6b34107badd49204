"""The HTTP API: auth, upload limits and types, bad schemas, bad PDFs, clear JSON errors, concurrency."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.service import Service
from schemas.ids import doc_id_of_file
from tests.conftest import BADPDF, PDFS, make_settings
from tests.vlm.chat_server import chat_server, ok, serve

pytestmark = pytest.mark.corpus
KEY = {"X-API-Key": "s3cret"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    s = make_settings(tmp_path / "data", None)
    s.api_key = "s3cret"
    s.max_upload_mb = 1
    with TestClient(create_app(s)) as c:
        yield c


def _upload(c: TestClient, *paths: Path, headers: dict | None = None, **form: str) -> httpx.Response:
    """Upload and wait for the ingest (``?wait=true``: the report, as before jobs; tests/app/test_jobs.py has the
    asynchronous contract)."""
    files = [("files", (p.name, p.read_bytes(), "application/pdf")) for p in paths]
    return c.post("/documents", params={"wait": "true"}, files=files, data=form,
                  headers=KEY if headers is None else headers)


def test_auth_health_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    r = client.get("/documents")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert client.get("/documents", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/documents", headers=KEY).json() == []
    assert "/extract" in client.get("/openapi.json").json()["paths"]


def test_upload_search_page_image_delete(client: TestClient) -> None:
    r = _upload(client, PDFS / "refcard-a4.pdf", collection="cards")
    assert r.status_code == 200, r.text
    f = r.json()["files"][0]
    assert f["status"] == "ingested" and f["pages"] == 3
    hits = client.post("/search", json={"question": "matrix inverse", "k": 2}, headers=KEY).json()
    assert len(hits) == 2 and hits[0]["collection"] == "cards" and hits[0]["words"]
    w = hits[0]["words"][0]["bbox"]
    png = client.get(f"/documents/{f['doc_id']}/pages/{hits[0]['page']}.png",
                     params={"width": 400, "boxes": f"{w[0]},{w[1]},{w[2]},{w[3]}:verified"}, headers=KEY)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert client.get(f"/documents/{f['doc_id']}/pages/99.png", headers=KEY).status_code == 400
    bad_box = client.get(f"/documents/{f['doc_id']}/pages/1.png", params={"boxes": "1,2,3"}, headers=KEY)
    assert bad_box.status_code == 400 and "x0,y0,x1,y1" in bad_box.json()["error"]["message"]
    loc = client.post("/locate", json={"doc_id": f["doc_id"], "page": 1, "value": "zebra helicopter"}, headers=KEY)
    assert loc.json()["status"] == "unverified"
    assert client.delete(f"/documents/{f['doc_id'][:10]}", headers=KEY).status_code == 200
    assert client.get(f"/documents/{f['doc_id']}", headers=KEY).status_code == 404


def test_limits_types_and_bad_pdfs(client: TestClient, tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * (2 * 2**20))
    r = _upload(client, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    r = _upload(client, txt)
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_type"
    r = _upload(client, BADPDF / "files/qpdf/c-empty.pdf", PDFS / "refcard-a4.pdf")
    assert r.status_code == 200
    assert [(x["status"], (x["error"] or {}).get("code")) for x in r.json()["files"]] == [
        ("failed", "empty_document"), ("ingested", None)]
    enc = BADPDF / "files/pypdf/encryption__r4-aes-user-password.pdf"
    assert _upload(client, enc).json()["files"][0]["error"]["code"] == "password_required"
    assert _upload(client, enc, password="asdfzxcv").json()["files"][0]["status"] == "ingested"
    r = client.post("/search", json={"question": ""}, headers=KEY)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.post("/search", json={"question": "x", "k": 0}, headers=KEY)
    assert r.status_code == 422


def test_ask_and_extract_without_vlm_say_how_to_configure(client: TestClient) -> None:
    _upload(client, PDFS / "refcard-a4.pdf")
    r = client.post("/ask", json={"question": "what is this?"}, headers=KEY)
    assert r.status_code == 503 and "PAGELENS_VLM_URL" in r.json()["error"]["message"]
    doc = client.get("/documents", headers=KEY).json()[0]["doc_id"]
    r = client.post("/extract", json={"schema": {"type": "object", "properties": {"x": {"type": "string"}}},
                                      "doc_ids": [doc]}, headers=KEY)
    assert r.status_code == 503


def test_bad_schemas_and_model_failures_are_clear(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None)
    with chat_server() as srv:
        s.vlm_url = srv.url
        s.vlm.max_attempts = 2
        with TestClient(create_app(s)) as c:
            doc = _upload(c, PDFS / "refcard-a4.pdf", headers={}).json()["files"][0]["doc_id"]
            for bad in ({"type": "object", "properties": {"x": {"type": "strin"}}}, {"type": "array"},
                        {"type": "object", "properties": {"x": {"$ref": "#/$defs/Nope"}}}):
                r = c.post("/extract", json={"schema": bad, "doc_ids": [doc]})
                assert r.status_code == 400, (bad, r.text)
                assert r.json()["error"]["code"] == "invalid_input" and r.json()["error"]["message"]
            srv.script = [ok("not json at all"), ok('{"x": 1}')]
            r = c.post("/extract", json={"schema": {"type": "object", "properties": {"x": {"type": "string"}}},
                                         "doc_ids": [doc]})
            assert r.status_code == 502 and r.json()["error"]["code"] == "model_behavior"
            assert r.json()["error"]["raw_output"] == '{"x": 1}'
            assert c.post("/extract", json={"schema": {}, "doc_ids": []}).status_code == 422


def test_concurrent_requests_over_http(tmp_path: Path) -> None:
    svc = Service(make_settings(tmp_path / "data", None))
    svc.ingest([PDFS / "R-data.pdf", PDFS / "refcard-a4.pdf"])
    expected = {q: [(h.doc_id, h.page) for h in svc.search(q, k=3)] for q in
                ("spreadsheet import", "matrix inverse", "relational database", "binary files")}
    errors: list[str] = []
    known = {d.doc_id for d in svc.list_documents()} | {doc_id_of_file(PDFS / "R-intro.pdf")}
    assert all(len(v) == 3 for v in expected.values())
    with serve(create_app(service=svc)) as url:

        def worker(n: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                for i in range(10):
                    q = list(expected)[(n + i) % len(expected)]
                    r = http.post("/search", json={"question": q, "k": 3})
                    got = [(h["doc_id"], h["page"]) for h in r.json()] if r.status_code == 200 else []
                    # the upload's pages change BM25's statistics as they land: the ranking may move, but every
                    # answer is whole, from complete documents
                    if r.status_code != 200 or len(got) != 3 or not {d for d, _ in got} <= known:
                        errors.append(f"{q}: {r.status_code} {got}")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        upload = httpx.post(f"{url}/documents", params={"wait": "true"}, timeout=120,
                            files=[("files", ("R-intro.pdf", (PDFS / "R-intro.pdf").read_bytes()))])
        for t in threads:
            t.join()
    assert errors == []
    assert upload.json()["files"][0]["status"] == "ingested"
    svc.close()


def test_locate_cli(tmp_path: Path) -> None:
    from tests.ingest.clirun import cli_env, pagelens

    env = cli_env(tmp_path / "d", None)
    pagelens("ingest", str(PDFS / "refcard-a4.pdf"), env=env)
    doc = json.loads(pagelens("docs", "list", "--json", env=env).stdout)[0]["doc_id"]
    svc_words = json.loads(pagelens("search", "matrix", "-k", "1", "--json", env=env).stdout)[0]
    word = svc_words["words"][0]
    q = tmp_path / "q.jsonl"
    q.write_text("\n".join(json.dumps(x) for x in [
        {"id": 1, "doc_id": doc, "page": svc_words["page"], "value": word["text"], "near": None},
        {"id": "two", "doc_id": doc[:12], "page": 1, "value": "purple elephants", "near": [0.1, 0.1, 0.2, 0.2]},
    ]))
    res = pagelens("locate", "--queries", str(q), env=env)
    assert res.returncode == 0, res.stderr
    a, b = (json.loads(line) for line in res.stdout.splitlines())
    assert a["id"] == 1 and a["status"] == "verified" and a["matched_text"].lower() == word["text"].lower()
    assert len(a["bbox"]) == 4 and a["boxes"] and set(a) == {"id", "status", "bbox", "boxes", "confidence",
                                                            "matched_text", "ambiguous", "candidates", "note"}
    assert b == {"id": "two", "status": "unverified", "bbox": [0.1, 0.1, 0.2, 0.2], "boxes": [[0.1, 0.1, 0.2, 0.2]],
                 "confidence": 0.0, "matched_text": None, "ambiguous": False, "candidates": [],
                 "note": "not on the page"}
