"""The isolation suite: the specification of teams (issue 18). Two tenants (alice on `alpha`, bob on `beta`), a
reader on `alpha`, and the bootstrap admin. For every route of the OpenAPI document, each kind of the other
tenant's resources answers exactly as one that does not exist; search never returns the other tenant's pages;
roles bound what a key may do; every write and denial is in the audit log; a revoked key stops at once. Run on
the embedded stores (SQLite + Qdrant Edge) and on PostgreSQL + a Qdrant server (qdrant-client's in-process mode
stands in for the server here)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from tests.conftest import make_settings, own_schema, postgres_url
from tests.serving import text_pdf

ADMIN = {"X-API-Key": "admin-secret"}
SCHEMA = {"type": "object", "properties": {"total": {"type": "string"}}}


def _pdf(path: Path, words: str) -> Path:
    return text_pdf(path, [f"{words} page {i + 1} Total: 42.00" for i in range(2)])


@pytest.fixture(params=["embedded", "postgres"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    s = make_settings(tmp_path / "data", None, vlm_backend="words")
    s.api_key = "admin-secret"
    # isolation, not fair share: the probes make hundreds of requests as bob, faster than any rate a key gets
    # (test_a_key_over_its_share_waits_and_the_others_do_not tests the limiter itself)
    s.access.requests_per_minute = 0
    if request.param == "postgres":
        url = postgres_url()
        if url is None:
            pytest.skip("no PostgreSQL here (CI starts one: .ci/postgres.sh)")
        with own_schema(url, "tenancy") as schema_url:
            s.database_url, s.qdrant_url = schema_url, ":memory:"
            with TestClient(create_app(s)) as c:
                yield c
        return
    with TestClient(create_app(s)) as c:
        yield c


def _key(c: TestClient, name: str, role: str, collections: list[str] | None) -> dict[str, str]:
    r = c.post("/keys", json={"name": name, "role": role, "collections": collections}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["key"].startswith("pl_") and r.json()["hint"] == r.json()["key"][-4:]
    return {"X-API-Key": r.json()["key"]}


def _upload(c: TestClient, key: dict[str, str], path: Path, collection: str) -> dict[str, Any]:
    r = c.post("/documents", params={"wait": "true"}, files=[("files", (path.name, path.read_bytes()))],
               data={"collection": collection}, headers=key)
    assert r.status_code == 200, r.text
    f = r.json()["files"][0]
    assert f["status"] == "ingested", f
    return {**f, "job_id": r.headers["location"].rsplit("/", 1)[-1]}


@pytest.fixture
def tenants(client: TestClient, tmp_path: Path) -> dict[str, Any]:
    alice, bob = _key(client, "alice", "writer", ["alpha"]), _key(client, "bob", "writer", ["beta"])
    rita = _key(client, "rita", "reader", ["alpha"])
    shared = _pdf(tmp_path / "shared.pdf", "zephyr quarterly shared")
    a = _upload(client, alice, _pdf(tmp_path / "a.pdf", "aardvark alpha ledger"), "alpha")
    a_shared = _upload(client, alice, shared, "alpha")
    b_shared = _upload(client, bob, shared, "beta")
    b = _upload(client, bob, _pdf(tmp_path / "b.pdf", "bison beta ledger"), "beta")
    ex = client.post("/extract", json={"schema": SCHEMA, "doc_ids": [a["doc_id"]]}, headers=alice)
    assert ex.status_code == 200, ex.text
    conv = client.post("/conversations", json={"collection": "alpha"}, headers=alice)
    assert conv.status_code == 201, conv.text
    return {"alice": alice, "bob": bob, "rita": rita, "a": a, "a_shared": a_shared, "b_shared": b_shared, "b": b,
            "extraction": ex.json()["id"], "conversation": conv.json()["id"]}


def _masked(r: httpx.Response, *refs: str) -> tuple[int, str, str]:
    """(status, code, message with the refs asked about masked): what may differ between two refs."""
    err = r.json().get("error", {}) if r.headers.get("content-type", "").startswith("application/json") else {}
    msg = str(err.get("message", ""))
    for ref in refs:
        msg = msg.replace(ref[:64], "REF")
    return r.status_code, str(err.get("code", "")), re.sub(r"[0-9a-f]{6,64}", "REF", msg)


# every route of the API with what bob may try on alice's resources; a new route must be added here
def _probes(t: dict[str, Any]) -> dict[tuple[str, str], list[tuple[str, str, dict[str, Any]]]]:
    a, doc, ex = t["a"], t["a"]["doc_id"], t["extraction"]
    refs = [doc, doc[:10], "a.pdf"]
    return {
        ("GET", "/documents/{ref}"): [("GET", f"/documents/{r}", {}) for r in refs],
        ("DELETE", "/documents/{ref}"): [("DELETE", f"/documents/{r}", {}) for r in refs],
        ("GET", "/documents/{ref}/pages/{page}.png"): [("GET", f"/documents/{r}/pages/1.png", {}) for r in refs],
        ("POST", "/search"): [("POST", "/search", {"json": {"question": "ledger", "doc_ids": [r]}}) for r in refs],
        ("POST", "/ask"): [("POST", "/ask", {"json": {"question": "ledger", "doc_ids": [r]}}) for r in refs],
        ("POST", "/extract"): [("POST", "/extract", {"json": {"schema": SCHEMA, "doc_ids": [r]}}) for r in refs],
        ("POST", "/extract/jobs"): [("POST", "/extract/jobs", {"json": {"schema": SCHEMA, "doc_ids": [r]}})
                                    for r in refs],
        ("POST", "/locate"): [("POST", "/locate", {"json": {"doc_id": r, "page": 1, "value": "42.00"}})
                              for r in refs],
        ("GET", "/jobs/{job_id}"): [("GET", f"/jobs/{a['job_id']}", {})],
        ("DELETE", "/jobs/{job_id}"): [("DELETE", f"/jobs/{a['job_id']}", {})],
        ("GET", "/extractions/{ex_id}"): [("GET", f"/extractions/{ex}", {})],
        ("POST", "/extractions/{ex_id}/corrections"): [
            ("POST", f"/extractions/{ex}/corrections", {"json": {"field": "total", "value": "0"}})],
        ("GET", "/conversations/{conversation_id}"): [("GET", f"/conversations/{t['conversation']}", {})],
        ("DELETE", "/conversations/{conversation_id}"): [("DELETE", f"/conversations/{t['conversation']}", {})],
        ("POST", "/conversations/{conversation_id}/messages"): [
            ("POST", f"/conversations/{t['conversation']}/messages", {"json": {"question": "ledger"}})],
    }


LISTINGS = {("GET", "/documents"), ("GET", "/jobs"), ("POST", "/search/documents"), ("GET", "/health"),
            ("GET", "/me"), ("GET", "/conversations"), ("POST", "/conversations")}
ADMIN_ONLY = {("POST", "/keys"), ("GET", "/keys"), ("DELETE", "/keys/{name}"), ("GET", "/audit"),
              ("GET", "/calibration/profiles"), ("POST", "/calibration/profiles"),
              ("DELETE", "/calibration/profiles/{profile_id}"), ("GET", "/calibration/corrections")}
UPLOAD = {("POST", "/documents")}


def _fake(method: str, path: str, kw: dict[str, Any], t: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The same probe with alice's refs swapped for refs that exist nowhere."""
    swap = {t["a"]["doc_id"]: "f" * 64, t["a"]["doc_id"][:10]: "f" * 10, "a.pdf": "nosuch.pdf",
            t["a"]["job_id"]: "0" * 32, t["extraction"]: "0" * 32, t["conversation"]: "0" * 16}

    def sub(x: str) -> str:
        for old, new in swap.items():
            x = x.replace(old, new)
        return x
    return method, sub(path), json.loads(sub(json.dumps(kw)))


def test_every_route_answers_another_tenants_resources_as_missing(client: TestClient,
                                                                  tenants: dict[str, Any]) -> None:
    t = tenants
    probes = _probes(t)
    routes = {(m.upper(), p) for p, ops in client.app.openapi()["paths"].items() for m in ops}  # type: ignore[attr-defined]
    covered = set(probes) | LISTINGS | ADMIN_ONLY | UPLOAD
    assert routes <= covered, f"routes without an isolation expectation: {sorted(routes - covered)}"
    for route, calls in probes.items():
        for method, path, kw in calls:
            theirs = client.request(method, path, headers=t["bob"], **kw)
            nothing = client.request(*_fake(method, path, kw, t)[:2], headers=t["bob"], **_fake(method, path, kw, t)[2])
            assert theirs.status_code == 404, (route, path, theirs.status_code, theirs.text)
            assert _masked(theirs, t["a"]["doc_id"], "a.pdf") == _masked(nothing, "f" * 64, "nosuch.pdf"), \
                (route, path, theirs.text, nothing.text)
            assert "alpha" not in theirs.text and "aardvark" not in theirs.text
    # alice's things are all still there, untouched by bob's tries
    doc = client.get(f"/documents/{t['a']['doc_id']}", headers=t["alice"])
    assert doc.status_code == 200 and doc.json()["collection"] == "alpha"
    assert client.get(f"/jobs/{t['a']['job_id']}", headers=t["alice"]).status_code == 200
    stored = client.get(f"/extractions/{t['extraction']}", headers=t["alice"]).json()
    assert stored["corrections"] == {}
    assert client.get(f"/conversations/{t['conversation']}", headers=t["alice"]).json()["turns"] == []


def test_listings_and_search_show_only_the_keys_collections(client: TestClient, tenants: dict[str, Any]) -> None:
    t = tenants
    names = {d["name"] for d in client.get("/documents", headers=t["bob"]).json()}
    assert names == {"shared.pdf", "b.pdf"}
    assert client.get("/documents", params={"collection": "alpha"}, headers=t["bob"]).json() == []
    for question in ("aardvark alpha ledger", "ledger", "zephyr quarterly shared"):
        hits = client.post("/search", json={"question": question, "k": 20}, headers=t["bob"]).json()
        assert hits and {h["collection"] for h in hits} == {"beta"}, (question, hits)
    assert client.post("/search", json={"question": "aardvark", "collection": "alpha"}, headers=t["bob"]).json() == []
    ranked = client.post("/search/documents", json={"question": "ledger"}, headers=t["bob"]).json()
    assert {d["doc_id"] for d in ranked} <= {t["b"]["doc_id"], t["b_shared"]["doc_id"]}
    assert client.get("/conversations", headers=t["bob"]).json() == [], "bob lists none of alice's conversations"
    jobs = client.get("/jobs", headers=t["bob"]).json()
    assert jobs and all(j["key_name"] == "bob" for j in jobs) and t["a"]["job_id"] not in {j["job_id"] for j in jobs}
    health = client.get("/health", headers=t["bob"]).json()
    assert health["documents"] == 2 and health["pages"] == 4
    assert client.get("/health", headers=ADMIN).json()["documents"] == 4
    # the admin sees every collection
    assert {d["collection"] for d in client.get("/documents", headers=ADMIN).json()} == {"alpha", "beta"}


def test_the_same_file_in_two_tenants_is_two_documents(client: TestClient, tenants: dict[str, Any]) -> None:
    t = tenants
    assert t["a_shared"]["doc_id"] != t["b_shared"]["doc_id"]
    alice_doc = client.get(f"/documents/{t['a_shared']['doc_id']}", headers=t["alice"]).json()
    assert alice_doc["collection"] == "alpha" and alice_doc["names"] == ["shared.pdf"]
    assert client.delete(f"/documents/{t['b_shared']['doc_id']}", headers=t["bob"]).status_code == 200
    hits = client.post("/search", json={"question": "zephyr quarterly shared"}, headers=t["alice"]).json()
    assert [h["doc_id"] for h in hits][:1] == [t["a_shared"]["doc_id"]], "alice's copy is intact and found"
    page = client.get(f"/documents/{t['a_shared']['doc_id']}/pages/1.png?width=100", headers=t["alice"])
    assert page.status_code == 200 and page.content.startswith(b"\x89PNG"), "with the stored bytes it needs"


def test_roles_bound_what_a_key_may_do(client: TestClient, tenants: dict[str, Any], tmp_path: Path) -> None:
    t = tenants
    rita, doc = t["rita"], t["a"]["doc_id"]
    assert client.post("/search", json={"question": "aardvark"}, headers=rita).json()[0]["doc_id"] == doc
    assert client.get(f"/documents/{doc}/pages/1.png", headers=rita).status_code == 200
    assert client.post("/locate", json={"doc_id": doc, "page": 1, "value": "42.00"}, headers=rita).status_code == 200
    pdf = _pdf(tmp_path / "r.pdf", "reader upload")
    denied = [client.post("/documents", files=[("files", (pdf.name, pdf.read_bytes()))], headers=rita),
              client.delete(f"/documents/{doc}", headers=rita),
              client.post("/extract", json={"schema": SCHEMA, "doc_ids": [doc]}, headers=rita),
              client.get("/jobs", headers=rita), client.get("/keys", headers=rita),
              client.get("/keys", headers=t["alice"]), client.get("/audit", headers=t["alice"]),
              client.post("/keys", json={"name": "x", "role": "admin"}, headers=t["alice"])]
    assert [r.status_code for r in denied] == [403] * len(denied), [r.text for r in denied]
    # a writer may not write outside its collections
    out = client.post("/documents", files=[("files", (pdf.name, pdf.read_bytes()))], data={"collection": "beta"},
                      headers=t["alice"])
    assert out.status_code == 403 and out.json()["error"]["code"] == "forbidden"
    assert client.get(f"/documents/{doc}", headers=ADMIN).status_code == 200, "nothing was deleted"


def test_writes_and_denials_are_audited(client: TestClient, tenants: dict[str, Any]) -> None:
    t = tenants
    client.delete(f"/documents/{t['b']['doc_id']}", headers=t["bob"])
    client.delete(f"/documents/{t['a']['doc_id']}", headers=t["rita"])  # denied: a reader
    client.get("/documents", headers={"X-API-Key": "pl_wrong"})  # denied: no such key
    events = client.get("/audit", params={"limit": 500}, headers=ADMIN).json()
    seen = {(e["key_name"], e["action"], e["outcome"], e["collection"]) for e in events}
    assert ("alice", "upload", "ok", "alpha") in seen and ("bob", "upload", "ok", "beta") in seen
    assert ("alice", "ingest", "ok", "alpha") in seen, "each file the job ingested, as the key that sent it"
    assert ("alice", "extract", "ok", "alpha") in seen
    assert ("bob", "delete", "ok", "beta") in seen
    assert any(e["key_name"] == "rita" and e["outcome"] == "denied" and e["action"].startswith("DELETE")
               for e in events)
    assert any(e["key_name"] == "(no valid key)" and e["outcome"] == "denied" for e in events)
    assert {("bootstrap", "keys create", "ok")} <= {(e["key_name"], e["action"], e["outcome"]) for e in events}
    assert [e["key_name"] for e in client.get("/audit", params={"key": "bob"}, headers=ADMIN).json()] \
        and all(e["key_name"] == "bob" for e in client.get("/audit", params={"key": "bob"}, headers=ADMIN).json())
    # the API cannot change or remove audit rows: no route takes another method on /audit
    for method in ("DELETE", "PUT", "PATCH", "POST"):
        assert client.request(method, "/audit", headers=ADMIN).status_code == 405


def test_a_revoked_or_expired_key_stops_at_once(client: TestClient, tenants: dict[str, Any]) -> None:
    t = tenants
    assert client.get("/documents", headers=t["bob"]).status_code == 200
    assert client.delete("/keys/bob", headers=ADMIN).status_code == 200
    r = client.get("/documents", headers=t["bob"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    listed = {k["name"]: k for k in client.get("/keys", headers=ADMIN).json()}
    assert listed["bob"]["revoked_at"] is not None and "key" not in listed["bob"]
    assert not any("pl_" in json.dumps(k) for k in listed.values()), "a listing never shows a key"
    again = client.post("/keys", json={"name": "bob", "role": "reader"}, headers=ADMIN)
    assert again.status_code == 409, "a name is one key forever (the audit log names keys)"
    gone = client.post("/keys", json={"name": "past", "role": "reader", "expires": "2020-01-01"}, headers=ADMIN)
    assert gone.status_code == 400 and "past" in gone.json()["error"]["message"]


def test_the_ui_asks_for_a_key_and_shows_only_its_collections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.service import Service
    from tests.conftest import ROOT

    data = tmp_path / "data"
    svc = Service(make_settings(data, None))
    svc.ingest([_pdf(tmp_path / "a.pdf", "aardvark alpha")], collection="alpha")
    svc.ingest([_pdf(tmp_path / "b.pdf", "bison beta")], collection="beta")
    key = svc.create_key("alice", "writer", ["alpha"]).key
    svc.close()
    for k, v in {"PAGELENS_DATA_DIR": str(data), "PAGELENS_ENCODER__ENABLED": "false",
                 "PAGELENS_VLM__CAPTIONS": "false"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("PAGELENS_API_KEY", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app" / "ui.py"), default_timeout=120).run()
        assert not at.exception, at.exception
        assert [t.label for t in at.text_input] == ["API key"] and not at.sidebar.radio, "only the sign-in form"
        at.text_input[0].input("pl_not-a-key")
        at.button[0].click().run()
        assert any("wrong, revoked or expired" in e.value for e in at.error)
        at.text_input[0].input(key)
        at.button[0].click().run()
        assert not at.exception, at.exception
        shown = " ".join(str(c.value) for c in at.caption)
        assert "Signed in as **alice** (writer; alpha)" in shown and "1 document" in shown, shown
        listed = at.dataframe[0].value
        assert list(listed["document"]) == ["a.pdf"] and set(listed["collection"]) == {"alpha"}, listed
        assert at.text_input[0].value == "alpha", "uploads go to the key's collection"
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()


def test_revoking_a_key_stops_its_jobs_and_cli_keys_work(tmp_path: Path) -> None:
    from app.service import Service
    from tests.ingest.clirun import cli_env, pagelens

    svc = Service(make_settings(tmp_path / "data", None))
    svc.create_key("carol", "writer", ["gamma"])
    svc.catalog.add_job("c" * 32, "ingest", {"files": ["x.pdf"], "collection": "gamma"}, key_name="carol",
                        collections=["gamma"])
    svc.catalog.add_job("d" * 32, "ingest", {"files": ["y.pdf"], "collection": "gamma"}, key_name="dave",
                        collections=["gamma"])
    svc.revoke_key("carol")
    assert svc.get_job("c" * 32).state == "cancelled", "a revoked key's queued job never runs"
    assert svc.get_job("d" * 32).state == "queued", "another key's job is untouched"
    assert any("cancelled its jobs" in e.detail for e in svc.audit_events(key_name="local"))
    svc.close()
    env = cli_env(tmp_path / "data", None)
    made = pagelens("keys", "create", "--name", "erin", "--role", "reader", "--collections", "gamma,delta",
                    "--expires", "30d", "--json", env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["key"].startswith("pl_") and key["collections"] == ["gamma", "delta"] and key["expires_at"]
    listed = json.loads(pagelens("keys", "list", "--json", env=env).stdout)
    assert {k["name"]: k["active"] for k in listed} == {"carol": False, "erin": True}
    assert key["key"] not in pagelens("keys", "list", env=env).stdout, "a listing never shows a key"
    bad = pagelens("keys", "create", "--name", "x", "--role", "owner", env=env)
    assert bad.returncode == 2 and "reader, writer, admin" in bad.stderr
    audit = json.loads(pagelens("audit", "--since", "1h", "--json", env=env).stdout)
    assert {e["action"] for e in audit} >= {"keys create", "keys revoke"}


def test_a_key_over_its_share_waits_and_the_others_do_not(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None)
    s.api_key = "admin-secret"
    s.access.requests_per_minute, s.access.burst = 6, 3  # a token each 10 s after a burst of three
    with TestClient(create_app(s)) as c:
        alice, bob = _key(c, "alice", "reader", ["alpha"]), _key(c, "bob", "reader", ["beta"])
        codes = [c.get("/documents", headers=alice).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429], codes
        over = c.get("/documents", headers=alice)
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert over.json()["error"]["code"] == "rate_limited"
        assert "PAGELENS_ACCESS__REQUESTS_PER_MINUTE" in over.json()["error"]["message"]
        assert c.get("/documents", headers=bob).status_code == 200, "another key keeps its own share"
        assert all(c.get("/documents", headers=ADMIN).status_code == 200 for _ in range(5)), "operators: no share"


def test_key_guessing_is_rate_limited_on_guarded_and_public_routes(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None)
    s.api_key = "admin-secret"
    s.access.auth_failures_per_minute = 3
    with TestClient(create_app(s)) as c:
        real = _key(c, "alice", "reader", ["alpha"])
        guesses = [c.get("/documents", headers={"X-API-Key": f"pl_guess{i}"}).status_code for i in range(5)]
        assert guesses[:3] == [401, 401, 401] and guesses[3:] == [429, 429], guesses
        blocked = c.get("/documents", headers=real)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1, "keys are not even checked"
        assert "documents" not in c.get("/health", headers=real).json(), "nor by the public /health"
