"""Batch extraction: one extraction per document, ``vlm.concurrency`` of them in flight, each stored in the
catalog as it finishes — so a run killed at any point (``kill -9`` included) and run again extracts only what
is missing. A document already extracted with the same schema, model and prompt is skipped; a failing document
is recorded and the others go on.

Results are one ``BatchResult`` per document (``--out results.jsonl``: one JSON line each; ``--csv``: one row
per document, one column per field path)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from schemas.answers import Extraction
from schemas.errors import PageLensError
from schemas.results import BatchResult, BatchStatus

__all__ = ["BatchResult", "batch_result", "extract_each", "to_csv"]  # BatchResult lives in schemas (the API returns it)


def batch_result(path: str, ex: Extraction, status: BatchStatus) -> BatchResult:
    """The line of a document whose extraction is ``ex``."""
    return BatchResult(doc_id=ex.pages_used[0].doc_id if ex.pages_used else None, path=path, status=status,
                       extraction_id=ex.id, data=ex.data,
                       fields=[{"path": f.path, "value": f.value, "status": f.status, "confidence": f.confidence,
                                "boxes": [{"page": b.page, "bbox": b.bbox.as_list() if b.bbox else None}
                                          for b in f.boxes]} for f in ex.fields])


def extract_each(svc: Any, schema: Any, docs: Sequence[tuple[str, str]], *, max_pages: int = 8,
                 concurrency: int | None = None, on_result: Callable[[BatchResult], None] | None = None,
                 who: Any = None) -> list[BatchResult]:
    """Extract ``schema`` from each of ``docs`` — (doc_id, name) pairs — separately. Results come back in the
    order of ``docs``; ``on_result`` is called as each finishes (for progress and streaming output)."""
    from vlm import prompts
    from vlm.structured import inline_refs, schema_hash
    from vlm.user_schema import load_schema, read_schema

    given = read_schema(schema)
    backend = svc.vlm()  # no VLM: fail at once, before any document
    user_schema, _ = load_schema(given)
    key = (backend.model, schema_hash(inline_refs(user_schema)), prompts.prompt_hash(prompts.SYSTEM, prompts.EXTRACT))

    def one(doc_id: str, name: str) -> BatchResult:
        try:
            done = svc.catalog.find_extraction(doc_id, *key)
            if done is not None:
                return batch_result(name, done, "skipped")
            scoped = {"who": who} if who is not None else {}
            return batch_result(name, svc.extract(given, [doc_id], max_pages=max_pages, **scoped), "extracted")
        except PageLensError as e:
            return BatchResult(doc_id=doc_id, path=name, status="failed", error={"code": e.code, "message": e.message})
        except Exception as e:  # a bug or an unexpected failure costs this document only; it is in the results
            return BatchResult(doc_id=doc_id, path=name, status="failed",
                               error={"code": "internal_error", "message": f"{e.__class__.__name__}: {e}"})

    results: dict[int, BatchResult] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency or svc.settings.vlm.concurrency, thread_name_prefix="extract")
    try:
        futures = {pool.submit(one, doc_id, name): i for i, (doc_id, name) in enumerate(docs)}
        for fut in as_completed(futures):
            results[futures[fut]] = r = fut.result()
            if on_result:
                on_result(r)
    except BaseException:  # Ctrl-C or a failing sink: stop now; what finished is stored, a re-run resumes
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(docs))]


def to_csv(results: Sequence[BatchResult]) -> str:
    """One row per document: path, doc_id, status, error, then one column per field path (first seen order)."""
    cols: dict[str, None] = {}
    for r in results:
        cols.update(dict.fromkeys(f["path"] for f in r.fields))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "doc_id", "status", "error", *cols])
    for r in results:
        values = {f["path"]: f["value"] for f in r.fields}
        w.writerow([r.path, r.doc_id or "", r.status, (r.error or {}).get("message", ""),
                    *(_cell(values.get(c)) for c in cols)])
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v)
