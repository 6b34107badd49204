"""Captions at ingest: a stage of its own — pending without a VLM, done by re-running ingest once one is set."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.service import Service
from schemas.settings import Settings
from tests.conftest import PDFS, make_settings
from tests.vlm.chat_server import Gauge, chat_server, ok

pytestmark = pytest.mark.corpus


PLACES = ["Zanzibar", "Kilimanjaro", "Serengeti"]


def _caption(i: int) -> str:
    return json.dumps({"kind": PLACES[i - 1], "title": f"Octave card part {i}", "entities": [PLACES[i - 1]],
                       "summary": f"Dense three-column reference of commands, section {i}."})


@contextmanager
def _served(s: Settings, script: list[Any]) -> Iterator[tuple[Any, Service]]:
    """(the loopback stand-in answering ``script``, a Service of ``s`` captioning against it), closed after."""
    with chat_server() as srv:
        s.vlm_url = srv.url
        srv.script = script
        svc = Service(s)
        try:
            yield srv, svc
        finally:
            svc.close()


def test_captions_pending_then_done_and_searchable(tmp_path: Path, tiny_siglip: Path) -> None:
    data = tmp_path / "data"
    svc = Service(make_settings(data, str(tiny_siglip), captions=True))
    r = svc.ingest([PDFS / "refcard-a4.pdf"])
    assert r.files[0].status == "ingested" and r.files[0].pending == ["caption"]
    doc = svc.get_document("refcard-a4.pdf")
    assert doc.pending == ["caption"] and "caption" not in doc.stages
    assert all(not h.words and not h.caption for h in svc.search("Kilimanjaro", k=3))
    again = svc.ingest([PDFS / "refcard-a4.pdf"])
    assert again.files[0].status == "unchanged" and again.files[0].pending == ["caption"]
    svc.close()

    with chat_server() as srv:
        s = make_settings(data, str(tiny_siglip), captions=True)
        s.vlm_url = srv.url
        s.vlm.concurrency = 1  # the script answers in arrival order: one page at a time keeps page i ↔ reply i
        srv.script = [ok(_caption(i)) for i in range(1, 4)]
        svc = Service(s)
        r = svc.ingest([PDFS / "refcard-a4.pdf"])
        assert r.files[0].status == "ingested" and r.files[0].pending == []
        assert len(srv.requests) == 3, "one caption request per page"
        assert all(any(p["type"] == "image_url" for p in req["messages"][1]["content"]) for req in srv.requests)
        doc = svc.get_document("refcard-a4.pdf")
        assert doc.pending == [] and doc.stages["caption"].startswith("Qwen/Qwen2.5-VL-3B-Instruct:")
        page2 = svc.catalog.get_page(doc.doc_id, 2).page
        assert page2.caption is not None and "Octave card part 2" in page2.caption and "Kilimanjaro" in page2.caption
        for i, place in enumerate(PLACES, 1):
            top = svc.search(place, k=1)[0]
            assert top.page == i and top.caption and place in top.caption
        assert svc.index.dense_dims() == {"image": 64, "caption": 64}
        assert svc.ingest([PDFS / "refcard-a4.pdf"]).files[0].status == "unchanged"
        assert len(srv.requests) == 3, "captions are not redone"
        svc.close()


def test_reembedding_keeps_caption_vectors_current(tmp_path: Path, tiny_siglip: Path) -> None:
    """Changing the encoder re-embeds pages without re-reading them — captions included: the caption vector is
    rebuilt with the new encoder, not dropped and not left from the old one."""
    from tests.tiny_models import build_tiny_siglip

    other = build_tiny_siglip(tmp_path / "other-siglip", seed=1)  # same dimension, different weights
    data = tmp_path / "data"
    with chat_server() as srv:
        s = make_settings(data, str(tiny_siglip), captions=True)
        s.vlm_url = srv.url
        s.vlm.concurrency = 1  # the script answers in arrival order: one page at a time keeps page i ↔ reply i
        srv.script = [ok(_caption(i)) for i in range(1, 4)]
        svc = Service(s)
        svc.ingest([PDFS / "refcard-a4.pdf"])
        svc.close()
        s2 = make_settings(data, str(other), captions=True)
        s2.vlm_url = srv.url
        svc = Service(s2)
        r = svc.ingest([PDFS / "refcard-a4.pdf"])
        assert r.files[0].status == "ingested" and len(srv.requests) == 3, "re-embedded, not re-captioned"
        doc = svc.get_document("refcard-a4.pdf")
        q = svc.encoder().encode_texts([svc.catalog.get_page(doc.doc_id, 2).page.caption or ""])[0].tolist()
        from store.vectors import PageQuery

        top = svc.index.query(PageQuery(dense={"caption": q}, sparse=None, limit=1))
        assert [(h.doc_id, h.page) for h in top] == [(doc.doc_id, 2)], "caption vectors present, from the new encoder"
        svc.close()


def test_captions_are_requested_concurrently(tmp_path: Path) -> None:
    """The caption pass keeps vlm.concurrency requests in flight (never more), sends JPEG page images, and
    stores every page's caption."""
    gauge = Gauge(0.3, ok(_caption(1)))

    s = make_settings(tmp_path / "data", None, captions=True)
    s.vlm.concurrency = 4
    with _served(s, [gauge] * 41) as (srv, svc):
        r = svc.ingest([PDFS / "R-data.pdf"])
        assert r.files[0].status == "ingested" and r.files[0].pending == ["embed"], r.files[0]  # no SigLIP
        doc = svc.get_document("R-data.pdf")
        caps = [rec.page.caption for rec in svc.catalog.iter_pages(doc.doc_id)]
        assert len(caps) == 41 and all(c and "Zanzibar" in c for c in caps)
    assert len(srv.requests) == 41
    assert gauge.peak == 4, gauge
    url = srv.requests[0]["messages"][1]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")


def test_a_full_server_is_retried_until_every_page_is_captioned(tmp_path: Path) -> None:
    """A server with 2 slots answers 429 (Retry-After) beyond them; 4 requests in flight back off and retry, and
    no page is left without its caption."""
    import pymupdf

    pdf = tmp_path / "twelve.pdf"
    doc = pymupdf.open()
    for i in range(12):
        doc.new_page().insert_text((72, 72), f"page {i + 1} of a dozen", fontsize=11)
    doc.save(str(pdf))
    gauge = Gauge(0.2, ok(_caption(2)), slots=2)
    s = make_settings(tmp_path / "data", None, captions=True)
    s.vlm.concurrency, s.vlm.max_retries = 4, 8
    with _served(s, [gauge] * 200) as (_, svc):
        r = svc.ingest([pdf])
        assert r.files[0].pending == ["embed"], r.files[0]  # captions done (no SigLIP here)
        caps = [rec.page.caption for rec in svc.catalog.iter_pages(r.files[0].doc_id or "")]
        assert len(caps) == 12 and all(c and "Kilimanjaro" in c for c in caps)
    assert gauge.peak <= 2 and gauge.refused > 0, gauge


def test_a_document_that_cannot_be_captioned_leaves_the_others_captioned(tmp_path: Path) -> None:
    import pymupdf

    pdfs = []
    for name in ("good.pdf", "lost.pdf"):
        doc = pymupdf.open()
        doc.new_page().insert_text((72, 72), f"{name} body text", fontsize=11)
        doc.save(str(tmp_path / name))
        pdfs.append(tmp_path / name)
    s = make_settings(tmp_path / "data", None)
    svc = Service(s)
    report = svc.ingest(pdfs)
    lost = report.files[1].doc_id or ""
    svc.files.path_of(lost).unlink()  # its stored file is gone: its pages cannot be rendered for the VLM
    svc.close()
    with chat_server() as srv:
        s = make_settings(tmp_path / "data", None, captions=True)
        s.vlm_url = srv.url
        srv.script = [ok(_caption(1))] * 3
        svc = Service(s)
        try:
            again = svc.ingest(pdfs)
            by = {Path(f.path).name: f for f in again.files}
            assert "caption" not in by["good.pdf"].pending and by["good.pdf"].status == "ingested"
            assert "caption" in by["lost.pdf"].pending
            assert svc.get_document("good.pdf").stages.get("caption")
            assert "caption" not in svc.get_document("lost.pdf").stages
        finally:
            svc.close()
    assert len(srv.requests) == 1


def test_captions_start_from_the_first_page_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22: pages go into the caption window as they are written, so the first request reaches the server
    before the document is read to the end; every page is captioned once (the pass after the read has nothing
    left), the stage is recorded, and a second ingest asks for nothing."""
    import time

    from ingest.pipeline import Ingestor

    read_at: list[float] = []
    real_done = Ingestor._done

    def done(self: Ingestor, *a: object, **k: object) -> object:
        read_at.append(time.time())
        return real_done(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Ingestor, "_done", done)
    gauge = Gauge(0.3, ok(_caption(1)))
    s = make_settings(tmp_path / "data", None, captions=True, workers=1)
    s.vlm.concurrency = 8
    with _served(s, [gauge] * 100) as (srv, svc):
        (f,) = svc.ingest([PDFS / "R-data.pdf"]).files
        assert f.status == "ingested" and "caption" not in f.pending, f
        doc = svc.get_document("R-data.pdf")
        assert doc.stages.get("caption") and "caption" not in doc.pending
        caps = [rec.page.caption for rec in svc.catalog.iter_pages(doc.doc_id)]
        assert len(caps) == 41 and all(c and "Zanzibar" in c for c in caps)
        hits = svc.search("Zanzibar", k=3)
        assert hits and hits[0].doc_id == doc.doc_id, "captions are indexed"
        (again,) = svc.ingest([PDFS / "R-data.pdf"]).files
        assert again.status == "unchanged", again
    assert len(srv.requests) == 41, "each page once: none left for the pass after the read, none asked again"
    assert len(read_at) == 1 and min(gauge.started) < read_at[0], "the first request went out while reading"
    assert gauge.peak == 8


def test_the_text_stage_embeds_captioned_pages_while_captions_are_in_flight(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22, item 5: each stored batch of captions has its pages' words and captions embedded at once, while
    later pages' requests are in flight — not after the window — each page once, and the stage is recorded with
    the caption stage it read (so a second ingest embeds nothing)."""
    import time

    import numpy as np

    from ingest.text_stage import TextEmbedder, page_text

    calls: list[tuple[float, list[str]]] = []
    real = TextEmbedder.encode

    def encode(model: object, inputs: list[str]) -> list[np.ndarray]:
        calls.append((time.time(), list(inputs)))
        return real(model, inputs)

    monkeypatch.setattr(TextEmbedder, "encode", staticmethod(encode))
    gauge = Gauge(0.3, ok(_caption(1)))
    s = make_settings(tmp_path / "data", None, captions=True, text_encoder=True, workers=1, batch_pages=8)
    s.vlm.concurrency = 4
    with _served(s, [gauge] * 100) as (srv, svc):
        (f,) = svc.ingest([PDFS / "R-data.pdf"]).files
        assert f.status == "ingested" and f.pending == ["embed"], f  # SigLIP is off here
        doc = svc.get_document("R-data.pdf")
        assert doc.stages.get("text", "").endswith(f"caption={doc.stages['caption']}")
        embedded = [t for _, inputs in calls for t in inputs]
        assert len(embedded) == 41, "each page once: nothing left for the pass after the window"
        assert all("Zanzibar" in t for t in embedded), "the text embedded carries the page's caption"
        assert sorted(embedded) == sorted(page_text(r) for r in svc.catalog.iter_pages(doc.doc_id))
        assert calls[0][0] < max(gauge.started), "embedding began while captions were still being asked for"
        assert len(svc.search("Zanzibar", k=1)) == 1
        calls.clear()
        (again,) = svc.ingest([PDFS / "R-data.pdf"]).files
        assert again.status == "unchanged" and not calls
    assert len(srv.requests) == 41
