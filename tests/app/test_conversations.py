"""Conversations (issue 20, items 2-4): turns kept with their citations exactly as answered, across an API restart
(SQLite and PostgreSQL catalogs), a removed or re-read document said so, each conversation its key's own, and a
follow-up rewritten with the history by the VLM before retrieval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.service import Service
from schemas.settings import IngestSettings, Settings
from tests.conftest import PDFS, make_settings
from tests.vlm.chat_server import chat_server, completion


def _settings(data: Path, request: pytest.FixtureRequest) -> Settings:
    s = make_settings(data, None, vlm_backend="words")
    if request.param == "postgresql":
        s.database_url = request.getfixturevalue("pg_url")
    return s


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def settings_of(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return _settings(tmp_path / "data", request)


def _boxes_param(turn: dict[str, Any]) -> str:
    return ";".join(",".join(f"{x:.6f}" for x in c["bbox"]) + ":verified" for c in turn["citations"] if c["bbox"])


def test_turns_and_boxes_survive_a_restart_and_a_removed_document_is_said(settings_of: Settings) -> None:
    with TestClient(create_app(settings_of)) as c:
        with (PDFS / "refcard-a4.pdf").open("rb") as f:
            up = c.post("/documents?wait=true", files={"files": ("refcard-a4.pdf", f, "application/pdf")})
        doc = up.json()["files"][0]["doc_id"]
        r = c.post("/conversations", json={})
        assert r.status_code == 201 and r.headers["location"] == f"/conversations/{r.json()['id']}"
        cid = r.json()["id"]
        first = c.post(f"/conversations/{cid}/messages", json={"question": "inverse of a matrix"}).json()
        second = c.post(f"/conversations/{cid}/messages", json={"question": "and its transpose?"}).json()
        assert first["citations"] and first["citations"][0]["bbox"] and first["citations"][0]["doc_id"] == doc
        assert second["n"] == 2 and second["standalone"] != second["question"], "the follow-up was rewritten"
        before = c.get(f"/conversations/{cid}").json()
        png = c.get(f"/documents/{doc}/pages/{first['citations'][0]['page']}.png",
                    params={"width": 500, "boxes": _boxes_param(first)}).content
        listed = c.get("/conversations").json()
        assert [x["id"] for x in listed] == [cid] and listed[0]["turns"] == 2
        assert listed[0]["title"] == "inverse of a matrix"

    with TestClient(create_app(settings_of)) as c:  # a new API process over the same stores
        again = c.get(f"/conversations/{cid}").json()
        assert again == before, "every turn and citation exactly as answered"
        turn = again["turns"][0]
        assert c.get(f"/documents/{doc}/pages/{turn['citations'][0]['page']}.png",
                     params={"width": 500, "boxes": _boxes_param(turn)}).content == png, "the same boxes drawn"
        assert c.delete(f"/documents/{doc}").status_code == 200
        gone = c.get(f"/conversations/{cid}").json()
        cite = gone["turns"][0]["citations"][0]
        assert cite["state"] == "removed" and "removed" in cite["note"]
        assert cite["bbox"] == before["turns"][0]["citations"][0]["bbox"], "the citation is kept as answered"
        assert c.delete(f"/conversations/{cid}").status_code == 200
        assert c.get(f"/conversations/{cid}").json()["error"]["code"] == "not_found"


def test_a_document_read_again_at_another_words_version_is_said(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Service(make_settings(data, None, vlm_backend="words")) as svc:
        svc.ingest([PDFS / "refcard-a4.pdf"])
        cid = svc.start_conversation().id
        turn = svc.converse(cid, "inverse of a matrix")
        assert turn.citations and svc.get_conversation(cid).turns[0].citations[0].state == "ok"
    s = make_settings(data, None, vlm_backend="words")
    s.ingest = IngestSettings(ocr_min_words=4)  # another words version: the document is read again
    with Service(s) as svc:
        assert svc.ingest([PDFS / "refcard-a4.pdf"]).files[0].status == "ingested"
        cite = svc.get_conversation(cid).turns[0].citations[0]
        assert cite.state == "reread" and cite.bbox == turn.citations[0].bbox


def test_a_conversation_is_its_keys_own(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None, vlm_backend="words")
    with Service(s) as svc:
        svc.ingest([PDFS / "refcard-a4.pdf"], collection="a")
        ann = svc.create_key("ann", "reader", ["a"]).key
        bob = svc.create_key("bob", "reader", ["a"]).key
        boss = svc.create_key("boss", "admin").key
    with TestClient(create_app(s)) as c:
        cid = c.post("/conversations", json={"collection": "a"}, headers={"X-API-Key": ann}).json()["id"]
        assert c.post(f"/conversations/{cid}/messages", json={"question": "matrix inverse"},
                      headers={"X-API-Key": ann}).status_code == 200
        r = c.get(f"/conversations/{cid}", headers={"X-API-Key": bob})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert c.post(f"/conversations/{cid}/messages", json={"question": "x"},
                      headers={"X-API-Key": bob}).status_code == 404
        assert c.get("/conversations", headers={"X-API-Key": bob}).json() == []
        assert c.get(f"/conversations/{cid}", headers={"X-API-Key": boss}).json()["info"]["key_name"] == "ann"
        r = c.post("/conversations", json={"collection": "b"}, headers={"X-API-Key": ann})
        assert r.status_code == 404, "a collection outside the key's scope"


def test_a_follow_up_is_rewritten_with_the_history_before_retrieval(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None)
    with Service(s) as svc:
        svc.ingest([PDFS / "refcard-a4.pdf", PDFS / "R-data.pdf"])
    rewritten = "How do I import a spreadsheet into R?"

    def answer(text: str) -> Any:
        from fastapi.responses import JSONResponse

        body = {"found": True, "answer": text, "evidence": [{"page": 1, "quote": text, "bbox_2d": None}]}
        return lambda _b: JSONResponse(completion(json.dumps(body)))

    def rewrite(_b: dict[str, Any]) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse(completion(json.dumps({"standalone": rewritten})))

    with chat_server() as srv:
        s.vlm_url = srv.url
        with Service(s) as svc:
            srv.script = [answer("read.table reads text files"), rewrite, answer("read.xls from gdata")]
            cid = svc.start_conversation().id
            first = svc.converse(cid, "How do I read a text file into R?")
            assert first.standalone == first.question, "a first question needs no rewriting"
            turn = svc.converse(cid, "and a spreadsheet?")
    assert len(srv.requests) == 3
    asked_to_rewrite = srv.requests[1]
    prompt = json.dumps(asked_to_rewrite["messages"])
    assert "How do I read a text file into R?" in prompt and "read.table reads text files" in prompt
    assert "and a spreadsheet?" in prompt and "image_url" not in prompt, "the history, as text, no pages"
    assert turn.standalone == rewritten and turn.question == "and a spreadsheet?"
    assert f"Question: {rewritten}" in json.dumps(srv.requests[2]["messages"]), "retrieval and answer use it"
    assert turn.answer.question == rewritten
