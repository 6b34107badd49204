"""The openai backend against a real HTTP server on loopback: request shapes, structured-output parameters,
retries, timeouts, malformed replies; then ask/extract end to end through it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from schemas.errors import ModelBehaviorError, ModelHTTPError
from schemas.settings import VlmSettings
from tests.vlm.chat_server import chat_server, ok, slow, status
from vlm.backend import Message, VlmRequest
from vlm.openai_backend import OpenAIBackend

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


def _req(schema: dict | None = SCHEMA) -> VlmRequest:
    img = np.full((56, 84, 3), 200, np.uint8)
    return VlmRequest(messages=[Message("system", ["be brief"]), Message("user", ["Page image 1:", img, "Q?"])],
                      json_schema=schema, max_tokens=64)


def test_request_shape_images_schema_logprobs() -> None:
    with chat_server() as srv:
        srv.script = [ok('{"a": "x"}', logprobs=[-0.1, -0.2])]
        backend = OpenAIBackend(srv.url, VlmSettings(model="Qwen/Qwen2.5-VL-7B-Instruct", max_retries=0))
        resp = backend.generate(_req())
    body = srv.requests[0]
    assert body["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and body["max_tokens"] == 64 and body["temperature"] == 0
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "pagelens_output", "schema": SCHEMA, "strict": True}}
    assert body["logprobs"] is True
    assert resp.text == '{"a": "x"}' and resp.prompt_tokens == 321 and resp.completion_tokens == 12
    assert resp.token_logprobs == [-0.1, -0.2] and backend.family == "qwen2.5-vl"


def test_vllm_structured_outputs_field() -> None:
    with chat_server() as srv:
        srv.script = [ok('{"a": "x"}')]
        backend = OpenAIBackend(srv.url, VlmSettings(model="m", structured_outputs="structured_outputs"))
        backend.generate(_req())
    assert srv.requests[0]["structured_outputs"] == {"json": SCHEMA} and "response_format" not in srv.requests[0]


def test_retries_with_backoff_then_success() -> None:
    with chat_server() as srv:
        srv.script = [status(503), status(429, "slow down"), ok('{"a": "y"}')]
        backend = OpenAIBackend(srv.url, VlmSettings(model="m", max_retries=2))
        t = time.perf_counter()
        assert backend.generate(_req()).text == '{"a": "y"}'
        assert time.perf_counter() - t >= 0.25 + 0.5 - 0.05, "exponential backoff (with jitter) between tries"
    assert len(srv.requests) == 3


def test_backoff_jitters_and_follows_retry_after() -> None:
    from vlm.openai_backend import backoff

    waits = [backoff(1) for _ in range(200)]
    assert all(0.5 <= w <= 1.0 for w in waits) and len({round(w, 3) for w in waits}) > 50, "jittered, not in step"
    assert all(backoff(10) <= 8.0 for _ in range(50))
    assert backoff(0, "2.5") == 2.5 and backoff(0, "600") == 30.0
    assert 0.25 <= backoff(0, "Wed, 21 Oct 2026 07:28:00 GMT") <= 0.5  # an HTTP date: fall back to backoff


def test_gives_up_after_bounded_retries_and_on_client_errors() -> None:
    with chat_server() as srv:
        srv.script = [status(500)] * 3
        backend = OpenAIBackend(srv.url, VlmSettings(model="m", max_retries=1))
        with pytest.raises(ModelHTTPError, match="failed after 2 tries"):
            backend.generate(_req())
        assert len(srv.requests) == 2
        srv.script = [status(400, "bad model name")]
        with pytest.raises(ModelHTTPError, match="HTTP 400") as e:
            backend.generate(_req())
        assert e.value.status == 400


def test_timeout() -> None:
    with chat_server() as srv:
        srv.script = [slow(2.0, ok("{}")), slow(2.0, ok("{}"))]
        backend = OpenAIBackend(srv.url, VlmSettings(model="m", timeout_s=0.5, max_retries=1))
        with pytest.raises(ModelHTTPError, match="timed out"):
            backend.generate(_req())


def test_server_without_logprobs_is_asked_again_without_them() -> None:
    with chat_server() as srv:
        srv.script = [status(400, "logprobs are not supported"), ok('{"a": "z"}'), ok('{"a": "w"}')]
        backend = OpenAIBackend(srv.url, VlmSettings(model="m"))
        assert backend.generate(_req()).text == '{"a": "z"}'
        backend.generate(_req())
    assert srv.requests[0]["logprobs"] is True and "logprobs" not in srv.requests[1]
    assert "logprobs" not in srv.requests[2]


@pytest.mark.parametrize("reply", [{"choices": []}, {"nope": 1}, {"choices": [{"message": {"content": None}}]}])
def test_malformed_replies(reply: dict) -> None:
    from fastapi.responses import JSONResponse

    with chat_server() as srv:
        srv.script = [lambda _b: JSONResponse(reply)]
        with pytest.raises(ModelBehaviorError, match="malformed") as e:
            OpenAIBackend(srv.url, VlmSettings(model="m")).generate(_req())
        assert e.value.raw_output


def test_unreachable_server() -> None:
    from tests.vlm.chat_server import free_port

    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", VlmSettings(model="m", max_retries=1))
    with pytest.raises(ModelHTTPError, match="cannot reach"):
        backend.generate(_req())


def test_reask_with_validation_error_then_raise_with_raw_output() -> None:
    from vlm.structured import generate_validated

    def validate(obj: object) -> dict:
        if not isinstance(obj, dict) or obj.get("a") != "good":
            raise ValueError("a must be 'good'")
        return obj

    with chat_server() as srv:
        backend = OpenAIBackend(srv.url, VlmSettings(model="m"))
        srv.script = [ok("not json"), ok('{"a": "bad"}'), ok('{"a": "good"}')]
        out, _, attempts = generate_validated(backend, _req().messages, SCHEMA, validate, max_attempts=3,
                                              max_tokens=32)
        assert out == {"a": "good"} and attempts == 3
        follow_up = srv.requests[2]["messages"]
        assert follow_up[-2] == {"role": "assistant", "content": '{"a": "bad"}'}
        assert "a must be 'good'" in follow_up[-1]["content"]
        srv.script = [ok('{"a": "bad"}')] * 2
        with pytest.raises(ModelBehaviorError) as e:
            generate_validated(backend, _req().messages, SCHEMA, validate, max_attempts=2, max_tokens=32)
        assert e.value.raw_output == '{"a": "bad"}' and e.value.attempts == 2


@pytest.mark.corpus
def test_ask_and_extract_end_to_end_through_the_server(service: object, tmp_path: Path) -> None:
    """A scripted VLM that cites real words of the page: PageLens verifies and snaps them; a made-up quote is
    reported as unverified, never dropped."""
    from app.service import Service
    from tests.conftest import PDFS

    svc: Service = service  # type: ignore[assignment]
    svc.ingest([PDFS / "R-data.pdf"])
    hits = svc.search("how to import a spreadsheet", k=1)  # the page ask will show the model
    rec = svc.catalog.get_page(hits[0].doc_id, hits[0].page)
    texts = rec.table.texts  # a quote of three words (not a table-of-contents run of dot leaders)
    first = next(i for i, t in enumerate(texts) if t.lower().startswith("spreadsheet"))
    i = next(i for i in range(first, len(texts)) if all(w.isalpha() for w in texts[i:i + 3]))
    quote = " ".join(texts[i:i + 3])
    answer = {"found": True, "answer": "Use a spreadsheet export.", "evidence": [
        {"page": 1, "quote": quote, "bbox_2d": None}, {"page": 1, "quote": "purple elephants dance", "bbox_2d": None}]}
    with chat_server() as srv:
        svc.settings.vlm_url = srv.url
        svc._vlm = None
        srv.script = [ok(json.dumps(answer), logprobs=[-0.05] * 5)]
        result = svc.ask("how to import a spreadsheet", k=1)
        assert result.found and [e.status for e in result.evidence] == ["verified", "unverified"]
        assert result.evidence[0].matched_text == quote and result.evidence[0].bbox is not None
        assert result.pages_used[0].page == hits[0].page
        sent = srv.requests[0]
        assert sum(p["type"] == "image_url" for p in sent["messages"][1]["content"]) == 1

        srv.script = [ok(json.dumps({"found": False, "answer": "", "evidence": []}))]
        nothing = svc.ask("what is the airspeed of a swallow", k=1)
        assert not nothing.found and nothing.answer == "Not found in these documents." and nothing.evidence == []

        schema = {"type": "object", "properties": {"term": {"type": "string"}, "missing": {"type": "string"}},
                  "required": ["term"]}
        extraction = {"term": {"value": quote, "page": hits[0].page, "bbox_2d": None},
                      "missing": {"value": "Quarterly revenue 999", "page": 1, "bbox_2d": [10, 10, 50, 50]}}
        doc = svc.get_document("R-data.pdf")
        srv.script = [ok(json.dumps({"term": "not an object"})), ok(json.dumps(extraction))]
        ex = svc.extract(schema, [doc.doc_id], max_pages=41)
        by_path = {f.path: f for f in ex.fields}
        assert ex.attempts == 2 and ex.data == {"term": quote, "missing": "Quarterly revenue 999"}
        assert by_path["term"].status == "verified" and by_path["term"].boxes[0].page == hits[0].page
        assert by_path["missing"].status == "unverified"
        assert by_path["term"].confidence > 0.9
        wrong_page = {**extraction, "term": {"value": quote, "page": 1 if hits[0].page != 1 else 2, "bbox_2d": None}}
        srv.script = [ok(json.dumps(wrong_page))]
        elsewhere = {f.path: f for f in svc.extract(schema, [doc.doc_id], max_pages=41).fields}["term"]
        assert elsewhere.status == "approximate" and elsewhere.boxes[0].page == hits[0].page, "found on another page"
        stored, corrections = svc.catalog.get_extraction(ex.id)
        assert stored.data == ex.data and stored.schema_hash == ex.schema_hash and corrections == {}


@pytest.mark.corpus
def test_server_backed_by_the_tiny_model(tiny_qwen25: Path) -> None:
    """The full path: openai backend → HTTP → a tiny Qwen2.5-VL under the request's JSON schema → valid output."""
    from vlm.answering import _AnswerOut
    from vlm.structured import bounded, inline_refs
    from vlm.transformers_backend import TransformersBackend

    model = TransformersBackend(VlmSettings(model=str(tiny_qwen25)))
    with chat_server(model_backend=model) as srv:
        backend = OpenAIBackend(srv.url, VlmSettings(model="tiny"))
        schema = bounded(inline_refs(_AnswerOut.model_json_schema()))
        for i in range(2):
            resp = backend.generate(VlmRequest(messages=[Message("user", [np.full((56, 56, 3), 255, np.uint8),
                                                                          f"q{i}"])],
                                               json_schema=schema, max_tokens=1500))
            _AnswerOut.model_validate_json(resp.text)
            assert resp.token_logprobs


def test_replicas_share_requests_and_a_dead_one_is_passed_over() -> None:
    """PAGELENS_VLM_URL with two live replicas: requests alternate; with a replica that refuses connections among
    them, every request still succeeds on the live one (its retry goes to the next replica at once)."""
    from tests.vlm.chat_server import free_port

    with chat_server() as a, chat_server() as b:
        a.script = [ok('{"a": "from a"}')] * 4
        b.script = [ok('{"a": "from b"}')] * 4
        backend = OpenAIBackend(f"{a.url},{b.url}/", VlmSettings(model="m", max_retries=0))
        texts = [backend.generate(_req()).text for _ in range(4)]
        assert sorted(texts) == ['{"a": "from a"}'] * 2 + ['{"a": "from b"}'] * 2
        assert len(a.requests) == len(b.requests) == 2

        dead = f"http://127.0.0.1:{free_port()}/v1"
        backend = OpenAIBackend(f"{dead},{a.url}", VlmSettings(model="m", max_retries=1))
        t = time.perf_counter()
        assert [backend.generate(_req()).text for _ in range(2)] == ['{"a": "from a"}'] * 2
        assert time.perf_counter() - t < 2.0, "no full backoff before trying the next replica"
