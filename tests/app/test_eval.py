"""``pagelens eval``: metrics, gold parsing, the retrieval and locate runs on real corpus files, comparisons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app import evaluation as ev
from app.service import Service
from tests.conftest import CORPUS, PDFS, ROOT, make_settings
from tests.ingest.clirun import cli_env, pagelens


def test_metrics() -> None:
    assert ev.ranks_of([("a", 1), ("a", 2), ("b", 1)], {("a", 2), ("b", 1)}) == [2, 3]
    assert ev.ndcg([1], 1, 5) == 1.0
    assert ev.ndcg([], 1, 5) == 0.0
    assert ev.ndcg([2], 1, 5) == pytest.approx(1 / 1.58496, rel=1e-4)
    assert ev.ndcg([6], 1, 5) == 0.0  # beyond k
    assert ev.iou([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    assert ev.iou([0, 0, 0.5, 1], [0.5, 0, 1, 1]) == 0.0
    assert ev.iou([0, 0, 1, 1], [0, 0, 0.5, 1]) == pytest.approx(0.5)


def test_gold_lines_are_validated_one_by_one(tmp_path: Path) -> None:
    gold = tmp_path / "g.jsonl"
    gold.write_text("\n".join([
        json.dumps({"id": "1", "question": "q", "doc": "a.pdf", "pages": [1]}),
        "{not json",
        json.dumps({"id": "2", "question": "q", "doc": "a.pdf", "pages": []}),
        json.dumps({"id": "1", "question": "again", "doc": "a.pdf", "pages": [2]}),
        "",
        json.dumps({"id": "3", "question": "q3", "doc": "b.pdf", "pages": [4, 5]}),
    ]))
    items, errors = ev.load_gold(gold, ev.RetrievalGold)
    assert [i.id for i in items] == ["1", "3"]
    assert [e["line"] for e in errors] == [2, 3, 4] and "duplicate id" in errors[2]["error"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    with pytest.raises(ev.InputError, match="no valid gold line"):
        ev.load_gold(bad, ev.RetrievalGold)


def test_compare_says_what_got_better_and_worse() -> None:
    old = {"kind": "retrieval", "metrics": {"hit@5": 0.5, "questions": 2},
           "items": [{"id": "a", "hit": True}, {"id": "b", "hit": False}, {"id": "c", "hit": True}]}
    new = {"kind": "retrieval", "metrics": {"hit@5": 0.75, "questions": 2},
           "items": [{"id": "a", "hit": False}, {"id": "b", "hit": True}, {"id": "d", "hit": True}]}
    diff = ev.compare(old, new)
    assert diff["better"] == ["b"] and diff["worse"] == ["a"]
    assert diff["only_old"] == ["c"] and diff["only_new"] == ["d"] and diff["deltas"]["hit@5"] == 0.25
    with pytest.raises(ev.InputError):
        ev.compare(old, {**new, "kind": "locate"})
    assert "questions" not in diff["deltas"] and diff["differs"] == []
    other_k = {**new, "metrics": {"hit@10": 0.9, "k": 10, "questions": 3}}
    with pytest.raises(ev.InputError, match="not comparable: k 5 vs 10"):
        ev.compare({**old, "metrics": {**old["metrics"], "k": 5}}, other_k)
    fewer = ev.compare(old, {**new, "metrics": {"hit@5": 0.75, "questions": 3}})
    assert fewer["differs"] == ["questions 2 vs 3"] and "questions" not in fewer["deltas"]


@pytest.mark.corpus
def test_eval_retrieval_on_a_manuals_outline(tmp_path: Path) -> None:
    """R-data.pdf's own outline titles as questions: PageLens finds most sections' pages in the top 5, the
    report lists each miss with what came instead, and an unknown document is reported, not scored."""
    gold = [g for g in ev.load_gold(ROOT / "eval" / "corpus_outline.jsonl", ev.RetrievalGold)[0]
            if g.doc == "R-data.pdf"]
    assert len(gold) > 30
    gold.append(ev.RetrievalGold(id="x", question="anything", doc="not-ingested.pdf", pages=[1]))
    svc = Service(make_settings(tmp_path / "data", None))
    try:
        svc.ingest([PDFS / "R-data.pdf"])
        report = ev.eval_retrieval(svc, gold, k=5)
    finally:
        svc.close()
    m = report["metrics"]
    assert m["questions"] == len(gold) - 1
    assert m["hit@5"] >= 0.9, report["misses"]
    assert m["mrr"] <= m["hit@5"] and 0 < m["ndcg@5"] <= 1
    assert [e["doc"] for e in report["errors"]] == ["not-ingested.pdf"]
    for item in report["items"]:
        assert item["hit"] == (item["rank"] is not None) and len(item["got"]) <= 3


@pytest.mark.corpus
def test_eval_locate_on_receipts(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "eval"))
    from receipts_gold import receipts_gold  # type: ignore[import-not-found]

    rows = receipts_gold(CORPUS / "receipts", limit=2, absent=True)
    gold = [ev.LocateGold.model_validate(r) for r in rows]
    svc = Service(make_settings(tmp_path / "data", None))
    try:
        svc.ingest([CORPUS / "receipts" / "img" / g.doc for g in gold if g.field == "company"])
        report = ev.eval_locate(svc, gold)
    finally:
        svc.close()
    m = report["metrics"]
    assert m["values"] == 8 and m["absent_values"] == 2
    assert m["hit_rate"] >= 0.75 and m["absent_unverified_rate"] == 1.0, report["items"]
    assert set(m["hit_rate_by_field"]) == {"address", "company", "date", "total"}
    assert m["verified_rate"] + m["approximate_rate"] + m["unverified_rate"] == pytest.approx(1.0)


@pytest.mark.corpus
def test_cli_eval_retrieval_writes_a_report_and_compares(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", None)
    assert pagelens("ingest", str(PDFS / "R-data.pdf"), env=env).returncode == 0
    gold = tmp_path / "g.jsonl"
    rows = [line for line in (ROOT / "eval" / "corpus_outline.jsonl").read_text().splitlines()
            if '"R-data.pdf"' in line][:10]
    gold.write_text("\n".join([*rows, "{broken"]) + "\n")
    first = pagelens("eval", "retrieval", "--gold", str(gold), "--out", str(tmp_path / "r1.json"), env=env)
    assert first.returncode == 0, first.stderr
    assert "hit@5" in first.stdout and "mrr" in first.stdout
    assert '"line": 11' in first.stderr  # the bad gold line, by number
    report = json.loads((tmp_path / "r1.json").read_text())
    assert report["metrics"]["questions"] == 10 and len(report["items"]) == 10
    again = pagelens("eval", "retrieval", "--gold", str(gold), "--compare", str(tmp_path / "r1.json"), env=env)
    assert again.returncode == 0 and "0 better" in again.stdout and "0 worse" in again.stdout


def test_gold_builders_run(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "eval" / "outline_gold.py"), str(PDFS / "R-intro.pdf"),
                          "--per-doc", "5"], capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 5 and all(r["doc"] == "R-intro.pdf" and r["pages"] for r in rows)
    assert rows[0]["question"] == "Preface"


def _invoice(path: Path) -> Path:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()
    for i, line in enumerate(["ACME Tools Ltd", "12 Harbour Road, Leith", "Invoice number: 4711",
                              "Date: 2024-03-01", "Widgets 3 x 10.00 30.00", "Total: 99.00"]):
        page.insert_text((72, 72 + 20 * i), line, fontsize=11)
    doc.save(str(path))
    return path


INVOICE_SCHEMA = {"type": "object", "properties": {
    "vendor": {"type": "string"}, "invoice_number": {"type": "string"}, "date": {"type": "string"},
    "total": {"type": "number"}, "iban": {"type": ["string", "null"]}}}


def test_words_backend_answers_from_the_page_and_values_are_verified(tmp_path: Path) -> None:
    svc = Service(make_settings(tmp_path / "data", None, vlm_backend="words"))
    try:
        svc.ingest([_invoice(tmp_path / "inv.pdf")])
        ex = svc.extract(INVOICE_SCHEMA, ["inv.pdf"])
    finally:
        svc.close()
    assert ex.data == {"vendor": "ACME Tools Ltd", "invoice_number": "4711", "date": "2024-03-01", "total": 99.0,
                       "iban": None}
    status = {f.path: f.status for f in ex.fields}
    assert status == {"vendor": "verified", "invoice_number": "verified", "date": "verified", "total": "verified",
                      "iban": "unverified"}
    total = next(f for f in ex.fields if f.path == "total")
    assert total.boxes and total.boxes[0].bbox is not None and total.boxes[0].bbox.y0 > 0.15  # the Total line


@pytest.mark.corpus
def test_eval_extract_on_receipts_with_the_offline_backend(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "eval"))
    from receipts_gold import receipts_extract_gold  # type: ignore[import-not-found]

    gold = [ev.ExtractGold.model_validate(r) for r in receipts_extract_gold(CORPUS / "receipts", limit=2)]
    svc = Service(make_settings(tmp_path / "data", None, vlm_backend="words"))
    try:
        svc.ingest([CORPUS / "receipts" / "img" / g.doc for g in gold])
        report = ev.eval_extract(svc, gold, str(ROOT / "eval" / "receipt.schema.json"))
    finally:
        svc.close()
    m = report["metrics"]
    assert m["documents"] == 2 and m["fields"] == 8 and not report["errors"]
    assert set(m["exact_by_field"]) == {"company", "address", "date", "total"}
    assert m["exact_by_field"]["date"] == 1.0, report["items"]  # the dates are printed as they are asked for
    assert 0 <= m["anls"] <= 1 and m["exact"] <= m["anls"] + 1e-9  # an exact match scores ANLS 1
    assert sum(m[f"{s}_rate"] for s in ev.STATUSES) == pytest.approx(1.0)
    cal = report["calibration"]
    assert cal["n"] == 8 and sum(b["n"] for b in cal["buckets"]) == 8 and 0 <= cal["ece"] <= 1
    from app.reliability import reliability_png

    png = reliability_png(cal, tmp_path / "rel.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibration_buckets() -> None:
    from grounding.calibration import reliability as calibration

    cal = calibration([(0.95, True), (0.91, False), (0.15, False), (1.0, True), (0.5, True)])
    rows = {round(b["lo"], 1): b for b in cal["buckets"] if b["n"]}
    assert rows[0.9]["n"] == 3 and rows[0.9]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert rows[0.1]["accuracy"] == 0.0 and rows[0.5]["accuracy"] == 1.0
    # ECE: |acc - conf| weighted by bucket size
    expected = (3 * abs(2 / 3 - (0.95 + 0.91 + 1.0) / 3) + abs(0 - 0.15) + abs(1 - 0.5)) / 5
    assert cal["ece"] == pytest.approx(expected, abs=1e-3)
