"""A long file read by several readers over page ranges (issue 10, item 5): the same catalog rows and vectors as
one reader, every page once, and one outcome when a part fails."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from app.service import Service
from ingest import pipeline
from ingest.reader import MIN_PART_PAGES, PARTS_PER_READER, plan_parts
from tests.conftest import make_settings


@pytest.mark.parametrize("pages,split", [(1, 4), (63, 2), (128, 2), (129, 2), (1000, 3), (2415, 4), (200, 1)])
def test_parts_cover_every_page_once_and_are_not_too_small(pages: int, split: int) -> None:
    parts = plan_parts(pages, split)
    assert [p for a, b in parts for p in range(a, b)] == list(range(pages))
    assert 1 <= len(parts) <= split * PARTS_PER_READER and (split > 1 or len(parts) == 1)
    assert len(parts) == 1 or all(b - a >= MIN_PART_PAGES for a, b in parts)
    assert (len(parts) > 1) == (split > 1 and pages >= 2 * MIN_PART_PAGES)


def _manual(path: Path, pages: int = 300) -> Path:
    doc = pymupdf.open()
    for n in range(1, pages + 1):
        page = doc.new_page()
        if n % 10 == 1:
            page.insert_text((72, 60), f"Chapter {n // 10 + 1}: topic {n * 7 % 13}", fontsize=16)
        page.insert_textbox(pymupdf.Rect(72, 80, 540, 700), f"Page {n} explains function_{n}() and its "
                            f"argument x{n % 17}; see also page {(n * 3) % pages + 1}.", fontsize=10)
    doc.save(str(path))
    return path


def _state(svc: Service) -> tuple[list[tuple], dict[int, tuple]]:
    """The document's page rows, and each point's sparse vector as the embedded index holds it."""
    import qdrant_edge as qe

    (doc,) = svc.list_documents()
    rows = [(r.page.page_no, r.page.word_count, r.page.headings, r.blob()) for r in svc.catalog.iter_pages(doc.doc_id)]
    records = svc.index._shard.scroll(qe.ScrollRequest(limit=1000, with_payload=True, with_vector=True))  # type: ignore[attr-defined]
    records = records[0] if isinstance(records, tuple) else records
    vectors = {}
    for r in records:
        text = r.vector["text"]
        vectors[int(r.payload["page"])] = (tuple(text.indices), tuple(round(v, 5) for v in text.values))
    return rows, vectors


def test_two_readers_over_page_ranges_store_what_one_reader_stores(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = _manual(tmp_path / "manual.pdf")
    parts_seen: set[tuple[int, int] | None] = set()
    real_run = pipeline.ReaderPool.run

    def spy(self: pipeline.ReaderPool, jobs: list[pipeline.ReadJob]):  # type: ignore[no-untyped-def]
        for ev in real_run(self, jobs):
            if isinstance(ev, pipeline.PagesRead):
                parts_seen.add(ev.job.pages)
            yield ev

    monkeypatch.setattr(pipeline.ReaderPool, "run", spy)
    states = []
    for workers in (1, 2):
        svc = Service(make_settings(tmp_path / f"data{workers}", None))
        try:
            report = svc.ingest([pdf], workers=workers)
            assert report.files[0].status == "ingested" and report.files[0].pages == 300
            assert svc.index.count() == 300
            states.append(_state(svc))
        finally:
            svc.close()
    assert parts_seen == {None, (75, 150), (150, 225), (225, 300)}, "one reader read it whole; two shared 4 parts"
    (rows1, vectors1), (rows2, vectors2) = states
    assert [r[0] for r in rows2] == list(range(1, 301))
    assert rows1 == rows2
    assert sorted(vectors1) == list(range(1, 301)) and vectors1 == vectors2


def test_a_long_file_whose_second_part_fails_is_reported_once_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stored copy is cut short once the first reader has opened it: the second part cannot open it. The file
    is one failed outcome, whatever its first part still sends, and nothing of it stays; the next file goes on."""
    pdf = _manual(tmp_path / "manual.pdf", pages=400)
    good = _manual(tmp_path / "short.pdf", pages=3)
    svc = Service(make_settings(tmp_path / "data", None))
    real_opened = pipeline.Ingestor._opened

    def opened_then_cut(self: pipeline.Ingestor, plan, collection):  # type: ignore[no-untyped-def]
        real_opened(self, plan, collection)
        if plan.path == pdf:
            stored = svc.files.path_of(plan.doc_id)
            stored.write_bytes(stored.read_bytes()[:2000])

    monkeypatch.setattr(pipeline.Ingestor, "_opened", opened_then_cut)
    try:
        report = svc.ingest([pdf, good], workers=2)
        out, other = report.files
        assert out.status == "failed" and out.error is not None, out
        assert "manual.pdf" in out.error.message, out.error
        assert other.status == "ingested" and other.pages == 3
        assert [d.name for d in svc.list_documents()] == [str(good)]
        assert svc.index.count() == 3
    finally:
        svc.close()
