"""Tiny random-weight Qwen2.5-VL and Qwen2-VL, loaded with from_pretrained(dir): schema-constrained decoding
yields output that validates against the bounded schema, every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.settings import VlmSettings
from store.pages import render_for_model
from tests.conftest import PDFS
from vlm.answering import _AnswerOut, ask
from vlm.backend import Message, VlmRequest
from vlm.extraction import extract
from vlm.pages import PageInput
from vlm.transformers_backend import TransformersBackend
from vlm.user_schema import load_schema

pytestmark = pytest.mark.corpus

# A bounded schema (the condition for "valid every time" with random weights): short strings, numeric
# ranges, few items. Real models need no such bounds to finish.
INVOICE = {"type": "object", "properties": {
    "invoice_number": {"type": "string", "maxLength": 12}, "total": {"type": "number", "minimum": 0, "maximum": 1e6},
    "line_items": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {
        "description": {"type": "string", "maxLength": 20},
        "amount": {"type": "number", "minimum": 0, "maximum": 1e6}}}}},
    "required": ["invoice_number", "total", "line_items"]}


def _page(max_pixels: int = 448 * 448) -> PageInput:
    import pymupdf

    from ingest.pdf import text_words  # the page's real words

    img = render_for_model(PDFS / "refcard-a4.pdf", 1, max_pixels=max_pixels)
    words = text_words(pymupdf.open(PDFS / "refcard-a4.pdf")[0])
    return PageInput(doc_id="d" * 64, page=1, image=img, words=words)


@pytest.mark.parametrize("which", ["tiny_qwen25", "tiny_qwen2"])
def test_constrained_ask_is_always_valid(which: str, request: pytest.FixtureRequest) -> None:
    model_dir: Path = request.getfixturevalue(which)
    backend = TransformersBackend(VlmSettings(model=str(model_dir)))
    assert backend.family == ("qwen2.5-vl" if which == "tiny_qwen25" else "qwen2-vl")
    page = _page()
    assert page.size[0] % 28 == 0 and page.size[1] % 28 == 0 and page.size[0] * page.size[1] <= 448 * 448
    for i in range(3):
        answer = ask(backend, f"What is on this page? ({i})", [page], max_attempts=1, max_tokens=1500)
        assert answer.model == str(model_dir)
        for ev in answer.evidence:  # random weights: evidence is whatever it is, but always well-formed
            assert ev.status in ("verified", "approximate", "unverified") and 0 <= ev.confidence <= 1


def test_constrained_raw_output_validates_and_has_logprobs(tiny_qwen25: Path) -> None:
    backend = TransformersBackend(VlmSettings(model=str(tiny_qwen25)))
    schema = _AnswerOut.model_json_schema()
    page = _page()
    from vlm.structured import bounded, inline_refs

    for i in range(3):
        resp = backend.generate(VlmRequest(messages=[Message("user", [page.image, f"Question {i}"])],
                                           json_schema=bounded(inline_refs(schema)), max_tokens=1500))
        _AnswerOut.model_validate_json(resp.text)
        assert resp.completion_tokens > 0 and resp.token_logprobs and len(resp.token_logprobs) == resp.completion_tokens
        assert all(lp <= 0 for lp in resp.token_logprobs)
        assert resp.mean_token_prob is not None and 0 < resp.mean_token_prob <= 1


def test_constrained_extraction_of_nested_arrays_validates(tiny_qwen25: Path) -> None:
    backend = TransformersBackend(VlmSettings(model=str(tiny_qwen25)))
    schema, validate = load_schema(INVOICE)
    page = _page()
    for _ in range(3):
        ex = extract(backend, schema, validate, [page], max_attempts=1, max_tokens=2000)
        validate(ex.data)
        assert set(ex.data) == {"invoice_number", "total", "line_items"}
        paths = {f.path for f in ex.fields}
        assert {"invoice_number", "total"} <= paths
        assert all(p.startswith("line_items[") for p in paths - {"invoice_number", "total"})
        for f in ex.fields:
            assert f.status in ("verified", "approximate", "unverified")
            for b in f.boxes:
                assert b.page == 1 and (b.bbox is None or 0 <= b.bbox.x0 < b.bbox.x1 <= 1)


def test_loading_a_missing_model_says_how_to_fix(tmp_path: Path) -> None:
    from schemas.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="PAGELENS_VLM"):
        TransformersBackend(VlmSettings(model=str(tmp_path / "nope")))
    assert np.zeros(1).size == 1


def test_concurrent_requests_run_as_batches_with_each_rows_own_result(tiny_qwen25: Path) -> None:
    """Six callers at once (as the caption pass makes them) share padded generate calls; each gets what it would
    have got alone under greedy decoding — the same tokens, so its own grammar (JSON rows) and its own end."""
    from concurrent.futures import ThreadPoolExecutor

    from vlm.answering import _CaptionOut

    backend = TransformersBackend(VlmSettings(model=str(tiny_qwen25), batch_size=4))
    pages = [_page(max_pixels=m) for m in (224 * 224, 280 * 280, 336 * 336)]
    schema = _CaptionOut.model_json_schema()
    requests = [VlmRequest(messages=[Message("user", [p.image, f"Describe page {i}."])], max_tokens=24,
                           json_schema=schema if i % 2 else None) for i, p in enumerate(pages * 2)]
    alone = [backend.generate(r) for r in requests]
    calls: list[int] = []
    real = backend._model.generate

    def counting(**kw: object) -> object:
        calls.append(int(kw["input_ids"].shape[0]))  # type: ignore[attr-defined]
        return real(**kw)

    backend._model.generate = counting  # type: ignore[method-assign]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(backend.generate, requests))
    assert sum(calls) == 6 and max(calls) > 1 and len(calls) < 6, calls
    for a, b, r in zip(alone, together, requests, strict=True):
        assert b.text == a.text and b.completion_tokens == a.completion_tokens
        assert b.prompt_tokens == a.prompt_tokens and len(b.token_logprobs or []) == b.completion_tokens
        assert r.json_schema is None or b.text.startswith("{")


def test_a_batch_that_fails_as_a_batch_is_run_row_by_row(tiny_qwen25: Path) -> None:
    """Out of GPU memory for a padded batch cannot be provoked on this CPU: a batch of more than one is refused
    here the way it would be, and every caller still gets its own result."""
    from concurrent.futures import ThreadPoolExecutor

    backend = TransformersBackend(VlmSettings(model=str(tiny_qwen25), batch_size=4))
    real = backend._run
    sizes: list[int] = []

    def refuse_batches(batch: list) -> None:  # type: ignore[type-arg]
        sizes.append(len(batch))
        if len(batch) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        real(batch)

    backend._run = refuse_batches  # type: ignore[method-assign]
    page = _page(max_pixels=224 * 224)
    requests = [VlmRequest(messages=[Message("user", [page.image, f"Describe {i}."])], max_tokens=8)
                for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(backend.generate, requests))
    assert all(r.completion_tokens > 0 for r in out)
    assert max(sizes) > 1 and sizes.count(1) >= 4, sizes
