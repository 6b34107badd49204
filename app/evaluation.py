"""``pagelens eval``: score PageLens against gold JSONL files the way its users judge it, and compare runs.

- retrieval: ``{"id","question","doc","pages":[...]}`` → hit@k, recall@k, MRR, nDCG@k, and every miss with what
  came instead;
- locate: ``{"id","doc","page","value","box"}`` → hit rate at IoU ≥ 0.5, status rates, absent values
  (``box: null``: a value not on the page must come back ``unverified``).

Each run gives a report (JSON-able dict): ``metrics`` (the figures), ``items`` (one row per gold item, keyed by
``id``), ``errors`` (bad gold lines, unknown documents). ``compare`` lines two reports up item by item. Gold lines
are validated one by one: a bad line is reported with its number and the rest still run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import InputError, NotFound, PageLensError, StoreError

IOU_HIT = 0.5
SURE = 0.9  # eval extract reports how often fields at or above this confidence are right
STATUSES = ("verified", "approximate", "unverified")

G = TypeVar("G", bound=BaseModel)


class RetrievalGold(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    question: str = Field(min_length=1)
    doc: str = Field(min_length=1, description="file name, id or id prefix of the document holding the answer")
    pages: list[int] = Field(min_length=1, description="1-based pages that answer the question (any counts)")


class LocateGold(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    doc: str = Field(min_length=1)
    page: int = Field(ge=1)
    value: str | int | float
    box: list[float] | None = Field(None, min_length=4, max_length=4,
                                    description="gold box [x0,y0,x1,y1] in page fractions; null: not on the page")
    alternatives: list[list[float]] = Field(default_factory=list, description="other boxes that also count")
    match: Literal["iou", "centre"] = Field("iou", description="iou: IoU ≥ 0.5; centre: IoU ≥ 0.5 or the box's "
                                                                "centre inside a gold box (gold boxes are whole lines)")
    field: str | None = None  # a group for per-field figures (e.g. receipts: company, date, ...)


def load_gold(path: Path, model: type[G]) -> tuple[list[G], list[dict[str, Any]]]:
    """Gold items from a JSONL file, and one error row per bad line (``line``, ``error``). Raises InputError when
    the file cannot be read or holds no valid item."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"cannot read the gold file {path}: {e.strerror}; give a JSONL file") from e
    items: list[G] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = model.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as e:
            errors.append({"line": n, "error": f"not a valid {model.__name__} line: {str(e).splitlines()[0]}"})
            continue
        if item.id in seen:  # type: ignore[attr-defined]
            errors.append({"line": n, "error": f"duplicate id {item.id!r}"})  # type: ignore[attr-defined]
            continue
        seen.add(item.id)  # type: ignore[attr-defined]
        items.append(item)
    if not items:
        raise InputError(f"{path} has no valid gold line ({len(errors)} bad); see `pagelens eval --help` for the "
                         "format")
    return items, errors


# -- metrics ------------------------------------------------------------------------------------------------


def ranks_of(ranked: Sequence[tuple[str, int]], relevant: set[tuple[str, int]]) -> list[int]:
    """1-based ranks at which relevant (doc_id, page) pairs appear in ``ranked``."""
    return [i for i, key in enumerate(ranked, 1) if key in relevant]


def ndcg(ranks: Sequence[int], n_relevant: int, k: int) -> float:
    """Binary-relevance nDCG@k from the ranks of the relevant results found."""
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(n_relevant, k) + 1))
    return dcg / ideal if ideal else 0.0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _resolver(find: Callable[[str], Any]) -> Callable[[str], str | None]:
    cache: dict[str, str | None] = {}

    def resolve(ref: str) -> str | None:
        if ref not in cache:
            try:
                cache[ref] = find(ref).doc_id
            except NotFound:  # a store that cannot be read (locked, down) is an error, not a missing document
                cache[ref] = None
        return cache[ref]

    return resolve


def _resolved(gold: Sequence[G], resolve: Callable[[str], str | None],
              on_item: Callable[[], None] | None) -> Iterator[tuple[G, str]]:
    """(item, doc_id) for each gold item whose document is ingested; ``on_item`` ticks after every item, run or
    skipped (progress)."""
    for g in gold:
        doc_id = resolve(g.doc)  # type: ignore[attr-defined]
        if doc_id is not None:
            yield g, doc_id
        if on_item:
            on_item()


def _unknown_docs(refs: Iterable[str], resolve: Callable[[str], str | None]) -> list[dict[str, Any]]:
    missing = sorted({r for r in refs if resolve(r) is None})
    return [{"doc": r, "error": f"document '{r}' is not ingested; ingest it first (pagelens ingest ...)"}
            for r in missing]


# -- retrieval ----------------------------------------------------------------------------------------------


def eval_retrieval(svc: Any, gold: Sequence[RetrievalGold], *, k: int = 5, collection: str | None = None,
                   on_item: Callable[[], None] | None = None) -> dict[str, Any]:
    """Search every gold question over the store (as users do: the whole store or ``collection``)."""
    resolve = _resolver(svc.get_document)
    errors = _unknown_docs((g.doc for g in gold), resolve)
    names: dict[str, str] = {}
    items: list[dict[str, Any]] = []
    for g, doc_id in _resolved(gold, resolve, on_item):
        try:
            hits = svc.search(g.question, k=k, collection=collection)
        except StoreError:  # the store, not this item: the whole run is wrong
            raise
        except PageLensError as e:
            errors.append({"id": g.id, "error": e.message})
            continue
        ranked = [(h.doc_id, h.page) for h in hits]
        for h in hits:
            names[h.doc_id] = Path(h.path).name
        relevant = {(doc_id, p) for p in g.pages}
        ranks = ranks_of(ranked, relevant)
        items.append({
            "id": g.id, "question": g.question, "doc": g.doc, "pages": g.pages,
            "hit": bool(ranks), "rank": ranks[0] if ranks else None,
            "recall": len(ranks) / min(len(relevant), k), "rr": 1.0 / ranks[0] if ranks else 0.0,
            "ndcg": ndcg(ranks, len(relevant), k),
            "got": [f"{names.get(d, d[:12])} p.{p}" for d, p in ranked[:3]],
        })
    n = len(items)
    metrics = {
        "questions": n, "k": k,
        f"hit@{k}": _mean(i["hit"] for i in items), f"recall@{k}": _mean(i["recall"] for i in items),
        "mrr": _mean(i["rr"] for i in items), f"ndcg@{k}": _mean(i["ndcg"] for i in items),
    }
    return {"kind": "retrieval", "metrics": metrics, "items": items, "errors": errors,
            "misses": [i["id"] for i in items if not i["hit"]]}


# -- locate -------------------------------------------------------------------------------------------------


def eval_locate(svc: Any, gold: Sequence[LocateGold], *,
                on_item: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the verifier on every gold value with no hint box. A hit: not ``unverified`` and a returned box (any
    line of it, or their union) with IoU ≥ 0.5 with the gold box; for an absent value (``box: null``), a hit is
    ``unverified``."""
    resolve = _resolver(svc.get_document)
    errors = _unknown_docs((g.doc for g in gold), resolve)
    items: list[dict[str, Any]] = []
    for g, doc_id in _resolved(gold, resolve, on_item):
        try:
            r = svc.locate(doc_id, g.page, g.value)
        except StoreError:  # the store, not this item: the whole run is wrong
            raise
        except PageLensError as e:
            errors.append({"id": g.id, "error": e.message})
            continue
        boxes = list(r.boxes or ([r.bbox] if r.bbox else []))
        if len(boxes) > 1:  # a value over several lines: its lines, or all of it
            boxes.append([min(b[0] for b in boxes), min(b[1] for b in boxes),
                          max(b[2] for b in boxes), max(b[3] for b in boxes)])
        golds = [g.box, *g.alternatives] if g.box is not None else []
        best = max((iou(b, gb) for b in boxes for gb in golds), default=0.0)
        inside = g.match == "centre" and any(gb[0] <= (b[0] + b[2]) / 2 <= gb[2] and gb[1] <= (b[1] + b[3]) / 2 <= gb[3]
                                             for b in boxes for gb in golds)
        hit = r.status == "unverified" if g.box is None else (r.status != "unverified" and (best >= IOU_HIT or inside))
        items.append({"id": g.id, "field": g.field, "value": str(g.value), "absent": g.box is None,
                      "status": r.status, "iou": round(best, 3), "hit": hit, "ambiguous": r.ambiguous,
                      "note": r.note})
    present = [i for i in items if not i["absent"]]
    absent = [i for i in items if i["absent"]]
    metrics: dict[str, Any] = {
        "values": len(present), "hit_rate": _mean(i["hit"] for i in present),
        **{f"{s}_rate": _mean(i["status"] == s for i in present) for s in ("verified", "approximate", "unverified")},
        "absent_values": len(absent), "absent_unverified_rate": _mean(i["hit"] for i in absent),
    }
    fields = sorted({i["field"] for i in present if i["field"]})
    if fields:
        metrics["hit_rate_by_field"] = {f: _mean(i["hit"] for i in present if i["field"] == f) for f in fields}
    return {"kind": "locate", "metrics": metrics, "items": items, "errors": errors,
            "misses": [i["id"] for i in items if not i["hit"]]}


# -- comparing runs -----------------------------------------------------------------------------------------


def compare(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What got better and worse from ``old`` to ``new``: metric deltas, and the items whose hit changed."""
    if old.get("kind") != new.get("kind"):
        raise InputError(f"cannot compare a {old.get('kind')} report with a {new.get('kind')} report")
    settings_keys = ("k", "questions")  # how the runs were made and how many asked: not metrics
    differs = [f"{m} {old['metrics'].get(m)} vs {new['metrics'].get(m)}" for m in settings_keys
               if m in new["metrics"] and old["metrics"].get(m) != new["metrics"].get(m)]
    if "k" in new["metrics"] and old["metrics"].get("k") != new["metrics"].get("k"):
        raise InputError(f"the runs are not comparable: {'; '.join(differs)} (compare runs made with the same -k)")
    deltas = {m: round(new["metrics"][m] - old["metrics"][m], 4) for m in new["metrics"]
              if m not in settings_keys and isinstance(new["metrics"][m], int | float)
              and isinstance(old["metrics"].get(m), int | float)}
    before = {i["id"]: i for i in old.get("items", [])}
    better = [i["id"] for i in new["items"] if i["id"] in before and i["hit"] and not before[i["id"]]["hit"]]
    worse = [i["id"] for i in new["items"] if i["id"] in before and not i["hit"] and before[i["id"]]["hit"]]
    return {"deltas": deltas, "better": better, "worse": worse, "differs": differs,
            "only_old": sorted(set(before) - {i["id"] for i in new["items"]}),
            "only_new": sorted({i["id"] for i in new["items"]} - set(before))}


def _mean(xs: Iterable[float | bool]) -> float:
    vals = [float(x) for x in xs]
    return round(sum(vals) / len(vals), 4) if vals else 0.0


# -- extract ------------------------------------------------------------------------------------------------


class GoldBox(BaseModel):
    page: int = Field(ge=1)
    box: list[float] = Field(min_length=4, max_length=4)


class ExtractGold(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    doc: str = Field(min_length=1, description="the document to extract from (name, id or id prefix)")
    data: dict[str, Any] = Field(description="the expected values, shaped like the schema")
    boxes: dict[str, GoldBox] = Field(default_factory=dict, description="gold boxes by field path (optional)")


def leaves(data: Any, path: str = "") -> dict[str, Any]:
    """Flatten nested data to ``{path: value}`` with the paths extraction uses (``items[0].price``)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(leaves(v, f"{path}.{k}" if path else k))
        return out
    if isinstance(data, list):
        out = {}
        for i, v in enumerate(data):
            out.update(leaves(v, f"{path}[{i}]"))
        return out
    return {path or "$": data}


def _anls(gold: Any, got: Any) -> float:
    """ANLS (strings) / ANLS* (nested values: dicts, lists) from the ``anls_star`` package."""
    from anls_star import anls_score

    score = anls_score(gold, got)
    return float(score[0] if isinstance(score, tuple) else score)


def same_value(gold: Any, got: Any) -> bool:
    """Exact match after trivial normalisation: case, spacing; numbers by value."""
    if gold is None or got is None:
        return gold is None and got is None
    try:
        return abs(float(str(gold).replace(",", "")) - float(str(got).replace(",", ""))) < 1e-6
    except ValueError:
        return " ".join(str(gold).split()).casefold() == " ".join(str(got).split()).casefold()


def eval_extract(svc: Any, gold: Sequence[ExtractGold], schema: Any, *, max_pages: int = 8,
                 on_item: Callable[[], None] | None = None) -> dict[str, Any]:
    """Extract every gold document with ``schema`` and score each field: exact match, ANLS (``anls_star``),
    box IoU where a gold box is given, status; and the calibration of the confidences (accuracy per bucket, ECE)
    — of ``confidence`` (calibrated where a profile applied) and of the verifier's raw score beside it — and how
    often a field at confidence ≥ ``SURE`` is right."""
    from grounding.calibration import reliability as calibration

    resolve = _resolver(svc.get_document)
    errors = _unknown_docs((g.doc for g in gold), resolve)
    docs: list[dict[str, Any]] = []
    fields: list[dict[str, Any]] = []
    for g, doc_id in _resolved(gold, resolve, on_item):
        try:
            ex = svc.extract(schema, [doc_id], max_pages=max_pages, save=False)
        except StoreError:  # the store, not this item: the whole run is wrong
            raise
        except PageLensError as e:
            errors.append({"id": g.id, "error": f"{e.code}: {e.message}"})
            continue
        got = {f.path: f for f in ex.fields}
        for path, want in leaves(g.data).items():
            f = got.get(path)
            value = f.value if f is not None else None
            row: dict[str, Any] = {
                "id": f"{g.id}/{path}", "doc": g.doc, "field": re.sub(r"\[\d+\]", "[]", path), "gold": want,
                "value": value, "exact": same_value(want, value),
                "anls": round(_anls(str(want), "" if value is None else str(value)), 4),
                "status": f.status if f is not None else "missing",
                "confidence": f.confidence if f is not None else 0.0,
                "raw_confidence": (f.raw_confidence if f.raw_confidence is not None else f.confidence)
                if f is not None else 0.0, "calibrated": bool(f and f.calibrated), "iou": None}
            gb = g.boxes.get(path)
            if gb is not None:
                row["iou"] = round(max((iou(b.bbox.as_list(), gb.box) for b in (f.boxes if f else [])
                                        if b.bbox is not None and b.page == gb.page), default=0.0), 3)
            row["hit"] = row["exact"]
            fields.append(row)
        docs.append({"id": g.id, "anls_star": round(_anls(g.data, ex.data), 4)})
    names = sorted({r["field"] for r in fields})
    boxed = [r for r in fields if r["iou"] is not None]
    cal = calibration([(float(r["confidence"]), bool(r["exact"])) for r in fields])
    cal_raw = calibration([(float(r["raw_confidence"]), bool(r["exact"])) for r in fields])
    sure = [r for r in fields if r["confidence"] >= SURE]
    metrics: dict[str, Any] = {
        "documents": len(docs), "fields": len(fields),
        "exact": _mean(r["exact"] for r in fields), "anls": _mean(r["anls"] for r in fields),
        "anls_star_documents": _mean(d["anls_star"] for d in docs),
        **{f"{s}_rate": _mean(r["status"] == s for r in fields) for s in ("verified", "approximate", "unverified")},
        "box_iou_hit_rate": _mean(r["iou"] >= IOU_HIT for r in boxed) if boxed else None,
        "ece": cal["ece"], "ece_raw": cal_raw["ece"], "calibrated_rate": _mean(r["calibrated"] for r in fields),
        f"fields_at_{SURE}": len(sure), f"exact_at_{SURE}": _mean(r["exact"] for r in sure),
        "exact_by_field": {n: _mean(r["exact"] for r in fields if r["field"] == n) for n in names},
        "anls_by_field": {n: _mean(r["anls"] for r in fields if r["field"] == n) for n in names},
        "exact_by_status": {s: _mean(r["exact"] for r in fields if r["status"] == s) for s in STATUSES
                            if any(r["status"] == s for r in fields)},
    }
    if metrics["box_iou_hit_rate"] is None:
        del metrics["box_iou_hit_rate"]
    return {"kind": "extract", "metrics": metrics, "items": fields, "documents": docs, "calibration": cal,
            "calibration_raw": cal_raw,
            "errors": errors, "misses": [r["id"] for r in fields if not r["exact"]]}
