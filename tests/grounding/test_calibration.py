"""Calibrated confidence (grounding.calibration): a profile fitted on fields with known probabilities recovers them,
is applied only to its own model and schema, and bad label sets get a clear message."""

from __future__ import annotations

import math
import random

import pytest

from app.calibration import apply_profile
from grounding import calibration as gc
from schemas.answers import Candidate, Extraction, FieldResult, FieldSignals
from schemas.coords import BBox
from schemas.errors import InputError

BOX = BBox(x0=0.1, y0=0.1, x1=0.2, y1=0.12)


def _field(rng: random.Random, path: str) -> tuple[FieldResult, float]:
    """A field with random evidence, and the probability that it is right under a known law of that evidence."""
    verified = rng.random() < 0.7
    similarity = 1.0 if verified else rng.uniform(0.6, 0.95)
    ambiguous = rng.random() < 0.25
    ocr = rng.uniform(0.6, 1.0)
    value = f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}" if path == "total" else "ACME Tools Ltd"
    z = (-1.0 + 2.0 * verified - 1.8 * ambiguous + 2.5 * (ocr - 0.8)) if path == "total" else \
        (0.3 + 1.2 * verified - 1.0 * ambiguous)
    f = FieldResult(path=path, value=value, boxes=[], confidence=round(similarity * ocr, 4),
                    raw_confidence=round(similarity * ocr, 4), status="verified" if verified else "approximate",
                    candidates=[Candidate(bbox=BOX, boxes=[BOX])] * (2 if ambiguous else 0),
                    signals=FieldSignals(similarity=similarity, ocr_score=ocr, matches=3 if ambiguous else 1))
    return f, 1 / (1 + math.exp(-z))


def _sample(n: int, seed: int) -> tuple[list[gc.Labelled], list[float]]:
    rng = random.Random(seed)
    rows, probs = [], []
    for i in range(n):
        f, p = _field(rng, "total" if i % 2 else "vendor")
        rows.append(gc.Labelled(f, rng.random() < p, "string"))
        probs.append(p)
    return rows, probs


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_a_profile_recovers_known_probabilities(method: str) -> None:
    train, _ = _sample(6000, seed=1)
    profile = gc.fit(train, model="m", schema_hash="s", source="synthetic", method=method)  # type: ignore[arg-type]
    assert profile.method == method and profile.rows == 6000 and 0 < profile.right < 6000
    test, truth = _sample(4000, seed=2)
    got = [gc.probability(profile, r.field, r.kind) for r in test]
    assert sum(abs(g - t) for g, t in zip(got, truth, strict=True)) / len(got) < 0.04
    labels = [r.right for r in test]
    floor = gc.ece(list(zip(truth, labels, strict=True)))  # the true probabilities' own ECE on 4000 draws (~0.02)
    assert gc.ece(list(zip(got, labels, strict=True))) < floor + 0.02
    raw = [r.field.confidence for r in test]  # the verifier's score is not a probability of being right
    assert gc.ece(list(zip(raw, (r.right for r in test), strict=True))) > 0.1
    assert profile.ece_cv < profile.ece_raw


def test_a_profile_applies_only_to_its_model_and_schema() -> None:
    rows, _ = _sample(400, seed=3)
    profile = gc.fit(rows, model="qwen", schema_hash="s1", source="synthetic")
    f, _ = _field(random.Random(4), "total")
    ex = Extraction(id="x", data={"total": f.value}, fields=[f], model="qwen", schema_hash="s1", prompt_hash="p",
                    pages_used=[])
    done = apply_profile(ex, [profile], {})
    g = done.fields[0]
    assert g.calibrated and g.raw_confidence == f.confidence and g.confidence == round(
        gc.probability(profile, f), 4) and done.calibration == profile.ref
    other_model = apply_profile(ex.model_copy(update={"model": "llava"}), [profile], {})
    assert not other_model.fields[0].calibrated and other_model.fields[0].confidence == f.confidence
    assert "no calibration profile for model 'llava'" in (other_model.calibration_note or "")
    other_schema = apply_profile(ex.model_copy(update={"schema_hash": "s2"}), [profile], {})
    assert not other_schema.fields[0].calibrated and "other schemas" in (other_schema.calibration_note or "")
    with pytest.raises(InputError, match="is for model 'qwen'"):
        gc.calibrate(ex.model_copy(update={"model": "llava"}), profile, {})
    unrelated = apply_profile(ex.model_copy(update={"model": "llava", "schema_hash": "s9"}), [profile], {})
    assert unrelated == ex.model_copy(update={"model": "llava", "schema_hash": "s9"})  # nothing said, nothing changed
    v2 = profile.model_copy(update={"version": 2, "intercept": profile.intercept - 5})
    assert apply_profile(ex, [profile, v2], {}).fields[0].confidence < g.confidence  # the newest version wins


def test_label_sets_that_cannot_be_fitted_say_what_is_needed() -> None:
    rows, _ = _sample(200, seed=5)
    with pytest.raises(InputError, match=f"too few.*at least {gc.MIN_ROWS}"):
        gc.fit(rows[:7], model="m", schema_hash="s", source="x")
    right = [gc.Labelled(r.field, True) for r in rows]
    with pytest.raises(InputError, match="all 200 labelled fields are right"):
        gc.fit(right, model="m", schema_hash="s", source="x")
    with pytest.raises(InputError, match="all 200 labelled fields are wrong"):
        gc.fit([gc.Labelled(r.field, False) for r in rows], model="m", schema_hash="s", source="x")
    few_wrong = right[:-3] + [gc.Labelled(r.field, False) for r in rows[-3:]]
    with pytest.raises(InputError, match=f"3 of 200 .* wrong; a profile needs at least {gc.MIN_EACH}"):
        gc.fit(few_wrong, model="m", schema_hash="s", source="x")


def test_ten_thousand_rows_fit_and_the_profile_is_plain_numbers() -> None:
    rows, _ = _sample(10_000, seed=6)
    profile = gc.fit(rows, model="m", schema_hash="s", source="x")
    assert profile.method == "isotonic" and len(profile.coef) == len(profile.features)
    again = type(profile).model_validate_json(profile.model_dump_json())  # what the catalog stores
    f = rows[0].field
    assert gc.probability(again, f) == gc.probability(profile, f)


def test_evidence_of_a_field() -> None:
    f = FieldResult(path="items[3].price", value="12.50", boxes=[], confidence=0.9, status="verified",
                    signals=FieldSignals(similarity=1.0, ocr_score=0.9, matches=1, near_model_box=False))
    ev = gc.features(f, "number", ["items[].price"])
    assert ev["verified"] == 1 and ev["number"] == 1 and ev["fraction"] == 1 and ev["parses"] == 1
    assert ev["away_from_box"] == 1 and ev["text_layer"] == 0 and ev["field=items[].price"] == 1
    assert gc.evidence(f.model_copy(update={"value": "twelve"}), "number")["parses"] == 0
    assert gc.evidence(f.model_copy(update={"value": "2024-03-01"}), "date")["parses"] == 1
    assert all(0 <= v <= 1 for v in ev.values())
