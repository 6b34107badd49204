"""Documents ranked for a question (``pagelens search --documents``): by their best page, with their pages."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from app.service import Service
from retrieval.search import rank_documents
from schemas.errors import InputError
from store.vectors import ScoredPage
from tests.conftest import make_settings
from tests.ingest.clirun import cli_env, pagelens


def _pdf(path: Path, pages: list[str]) -> Path:
    doc = pymupdf.open()
    for text in pages:
        doc.new_page().insert_textbox(pymupdf.Rect(72, 72, 540, 720), text, fontsize=11)
    doc.save(str(path))
    return path


def test_rank_documents_by_best_page_not_by_size() -> None:
    scored = [ScoredPage("big", 1, "c", 0.016), ScoredPage("small", 3, "c", 0.0164),
              ScoredPage("big", 2, "c", 0.0159), ScoredPage("big", 3, "c", 0.0158), ScoredPage("small", 1, "c", 0.01)]
    assert rank_documents(scored) == [("small", 0.0164, [3, 1]), ("big", 0.016, [1, 2, 3])]
    assert rank_documents([]) == []


def test_search_documents(tmp_path: Path) -> None:
    sparse = _pdf(tmp_path / "sparse.pdf", ["sparse matrix storage formats: compressed columns",
                                             "solving sparse linear systems with a sparse matrix"])
    filler = _pdf(tmp_path / "graphics.pdf", [f"plotting page {i} colours axes legends" for i in range(6)])
    svc = Service(make_settings(tmp_path / "data", None))
    try:
        svc.ingest([sparse, filler])
        ranked = svc.search_documents("sparse matrix", k=5)
        assert [Path(d["name"]).name for d in ranked] == ["sparse.pdf"]
        assert sorted(ranked[0]["pages"]) == [1, 2]
        assert Path(svc.search_documents("legends and axes", k=5)[0]["name"]).name == "graphics.pdf"
        with pytest.raises(InputError):
            svc.search_documents("  ")
    finally:
        svc.close()
    env = cli_env(tmp_path / "data", None)
    r = pagelens("search", "--documents", "sparse matrix", env=env)
    assert r.returncode == 0 and "sparse.pdf" in r.stdout and "pages" in r.stdout, r.stderr
