"""Calibrated confidence end to end (issue 21, item 3): ``pagelens calibrate fit`` from a gold set through the real
CLI, profiles kept and versioned in the catalog (SQLite and PostgreSQL), applied to new extractions of their own
model and schema only, labels from reviewers' corrections, and the routes admin-only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import evaluation as ev
from app.api import create_app
from app.calibration import fit_profile, labels_from_corrections, labels_from_gold, schema_identity
from app.service import Service
from schemas.settings import Settings
from tests.conftest import make_settings
from tests.ingest.clirun import cli_env, pagelens

SCHEMA = {"type": "object", "properties": {
    "company": {"type": "string"}, "date": {"type": "string", "format": "date"}, "total": {"type": "number"}}}
N = 28


def _receipt(path: Path, i: int) -> dict[str, Any]:
    """A one-page receipt the offline ``words`` backend reads right or wrong in known ways: a greeting printed
    above the shop's name (it takes the first line for the company), an item count labelled "Total items" above
    the total (it takes the first "Total" line)."""
    import pymupdf

    shop, date, total = f"SHOP NUMBER {i} TRADING", f"2024-03-{1 + i % 27:02d}", f"{10 + 3.15 * i:.2f}"
    lines = (["WELCOME AND THANK YOU"] if i % 3 == 0 else []) + [shop, f"Date: {date}", "Bread 2.50"]
    lines += ([f"Total items: {1 + i % 4}"] if i % 4 == 1 else []) + [f"Total: {total}"]
    doc = pymupdf.open()
    page = doc.new_page()
    for n, line in enumerate(lines):
        page.insert_text((72, 72 + 20 * n), line, fontsize=11)
    doc.save(str(path))
    return {"id": f"r{i}", "doc": path.name, "data": {"company": shop, "date": date, "total": float(total)}}


def _corpus(tmp_path: Path, settings: Settings) -> tuple[Path, Path, list[dict[str, Any]]]:
    docs = tmp_path / "receipts"
    docs.mkdir()
    gold = [_receipt(docs / f"r{i:02d}.pdf", i) for i in range(N)]
    gold_file = tmp_path / "gold.jsonl"
    gold_file.write_text("".join(json.dumps(g) + "\n" for g in gold))
    schema_file = tmp_path / "receipt.json"
    schema_file.write_text(json.dumps(SCHEMA))
    svc = Service(settings)
    try:
        svc.ingest(sorted(docs.iterdir()))
    finally:
        svc.close()
    return gold_file, schema_file, gold


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s = make_settings(tmp_path / "data", None, vlm_backend="words")
    if request.param == "postgresql":
        s.database_url = request.getfixturevalue("pg_url")
    return s


def test_fit_from_gold_then_extractions_of_that_model_and_schema_are_calibrated(tmp_path: Path,
                                                                               settings: Settings) -> None:
    gold_file, schema_file, gold = _corpus(tmp_path, settings)
    env = cli_env(settings.data_dir, None, PAGELENS_VLM__BACKEND="words",
                  **({"PAGELENS_DATABASE_URL": settings.database_url} if settings.database_url else {}))
    r = pagelens("calibrate", "fit", "--gold", str(gold_file), "--schema", str(schema_file), "--json", env=env)
    assert r.returncode == 0, r.stderr
    profile = json.loads(r.stdout)
    assert profile["rows"] == 3 * N and profile["version"] == 1 and profile["model"] == "pagelens-words"
    assert 0 < profile["right"] < 3 * N and profile["method"] == "isotonic"  # 84 rows: the isotonic step too
    assert profile["ece_cv"] < profile["ece_raw"]
    listed = pagelens("calibrate", "list", "--json", env=env)
    assert [p["id"] for p in json.loads(listed.stdout)] == [profile["id"]]

    svc = Service(settings)
    try:
        ex = svc.extract(str(schema_file), ["r01.pdf"])  # "Total items: 2" taken for the total: wrong, verified
        assert ex.calibration == f"{profile['id'][:12]} v1" and ex.calibration_note is None
        assert all(f.calibrated and f.raw_confidence is not None for f in ex.fields)
        total = next(f for f in ex.fields if f.path == "total")
        assert total.value == 2 and total.status == "verified" and total.raw_confidence >= 0.9
        assert total.confidence < 0.5  # verified on the page, but a value like this is seldom the total
        good = next(f for f in svc.extract(str(schema_file), ["r02.pdf"]).fields if f.path == "total")
        assert good.value == float(gold[2]["data"]["total"]) and good.confidence > 0.8
        # a schema the profile was not fitted for: nothing changes, and it is said why
        other = svc.extract({**SCHEMA, "properties": {**SCHEMA["properties"], "vat": {"type": "string"}}},
                            ["r02.pdf"])
        assert not any(f.calibrated for f in other.fields) and other.calibration is None
        assert "other schemas" in (other.calibration_note or "")
        # a second fit is version 2 and applies; deleting it brings version 1 back
        items, _ = ev.load_gold(gold_file, ev.ExtractGold)
        rows, made, errors = labels_from_gold(svc, items[:20], str(schema_file))
        assert not errors and len(rows) == 60
        v2 = svc.save_calibration(fit_profile(rows, made, schema_hash=profile["schema_hash"], source="test"))
        assert v2.version == 2 and [p.version for p in svc.calibrations(profile["schema_hash"])] == [2, 1]
        assert svc.extract(str(schema_file), ["r02.pdf"]).calibration == v2.ref
        svc.delete_calibration(v2.id[:10])
        assert svc.extract(str(schema_file), ["r02.pdf"]).calibration.endswith("v1")  # type: ignore[union-attr]
    finally:
        svc.close()


def test_labels_from_reviewers_corrections(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", None, vlm_backend="words")
    _corpus(tmp_path, settings)
    svc = Service(settings)
    try:
        _, schema_hash, kinds = schema_identity(SCHEMA)
        a = svc.extract(SCHEMA, ["r00.pdf"])  # company read as the greeting
        b = svc.extract(SCHEMA, ["r02.pdf"])
        svc.extract(SCHEMA, ["r03.pdf"])  # never reviewed: not a label
        svc.correct_extraction(a.id, "company", "SHOP NUMBER 0 TRADING")
        svc.correct_extraction(b.id, "total", b.data["total"])  # confirmed as it was
        reviewed = svc.corrected_extractions(schema_hash)
        assert sorted(ex.id for ex, _ in reviewed) == sorted([a.id, b.id])
        labels = {(ex.id, r.field.path): r.right for (ex, _), r in
                  zip([p for p in reviewed for _ in p[0].fields], labels_from_corrections(reviewed, kinds),
                      strict=True)}
        assert labels[(a.id, "company")] is False and labels[(a.id, "date")] is True
        assert labels[(b.id, "total")] is True and len(labels) == 6
    finally:
        svc.close()
    r = pagelens("calibrate", "fit", "--schema", str(tmp_path / "receipt.json"), "--from-corrections",
                 env=cli_env(settings.data_dir, None, PAGELENS_VLM__BACKEND="words"))
    assert r.returncode == 2 and "6 labelled fields is too few" in r.stderr and "at least 20" in r.stderr


def test_calibration_routes_are_for_admins(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", None, vlm_backend="words")
    s.api_key = "admin-secret"
    admin = {"X-API-Key": "admin-secret"}
    with TestClient(create_app(s)) as c:
        made = c.post("/keys", json={"name": "w", "role": "writer", "collections": None}, headers=admin)
        writer = {"X-API-Key": made.json()["key"]}
        assert c.get("/calibration/profiles", headers=writer).status_code == 403
        assert c.get("/calibration/profiles", headers=admin).json() == []
        bad = c.post("/calibration/profiles", json={"id": "x"}, headers=admin)
        assert bad.status_code == 422
        assert c.get("/calibration/corrections", params={"schema_hash": "abc"}, headers=admin).json() == []
        assert c.delete("/calibration/profiles/nope", headers=admin).status_code == 404
