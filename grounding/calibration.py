"""Calibrated confidence: a field's evidence mapped to the probability that its value is right.

The verifier's score says "this text is printed on the page", not "this is the right value" (a subtotal taken for
the total is printed too). A profile, fitted on labelled fields of one model and one schema, turns the evidence
into a probability:

- the verifier: status, similarity of the match, how many equally good places (ambiguity), found by the model's
  box or away from it, the OCR engine's score for the matched words (or a text layer);
- the model: its mean token probability where the backend gives one; whether other page windows disagreed;
- the value: empty, parses as the type its schema asks for, looks like a number or a date, its length;
- the field: which one it is (each field has its own base rate and its own use of the signals above).

Fitting is scikit-learn's: a logistic regression over those features (Platt scaling over several signals; the
method for the smallest sets), and from ``ISOTONIC_FROM`` rows on, an isotonic map of its cross-validated output on
top (``method="isotonic"``), which undoes the shrinkage the logistic regression's penalty puts on strong signals
(on the receipts it cuts the held-out error of the logistic regression alone by a third). A profile is plain
numbers (``schemas.calibration.CalibrationProfile``): applying it needs numpy only; the catalog keeps it as JSON.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from grounding.normalise import number_of, parse_dates
from schemas.answers import Extraction, FieldResult
from schemas.calibration import CalibrationProfile
from schemas.errors import InputError

MIN_ROWS = 20  # labelled fields a profile needs at the least
MIN_EACH = 5  # ... with at least this many right and this many wrong
ISOTONIC_FROM = 80  # labelled fields from which "auto" adds the isotonic step (below: Platt alone)
FOLDS = 5
SURE_AT_MOST = (0.01, 0.99)  # the isotonic map's bounds
BUCKETS = 10

_FRACTION = re.compile(r"\d[.,]\d{1,3}(?!\d)")  # a number written with a fractional part: 12.50, 3,5

Kind = str  # a leaf's type in the schema: "string", "number", "integer", "boolean", "date", "date-time", ...
Choice = Literal["auto", "platt", "isotonic"]


def field_key(path: str) -> str:
    """A field's name across records and list items: ``items[3].price`` → ``items[].price``."""
    return re.sub(r"\[\d+\]", "[]", path)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parses(value: Any, text: str, kind: Kind | None) -> float:
    if not text:
        return 0.0
    if kind in ("number", "integer"):
        return float((isinstance(value, int | float) and not isinstance(value, bool)) or number_of(text) is not None)
    if kind in ("date", "date-time"):
        return float(bool(parse_dates(text)))
    if kind == "boolean":
        return float(isinstance(value, bool))
    return 1.0


def evidence(f: FieldResult, kind: Kind | None = None) -> dict[str, float]:
    """The field-independent features of one field's evidence, each in [0, 1]."""
    raw = f.raw_confidence if f.raw_confidence is not None else f.confidence
    s = f.signals
    text = _text(f.value)
    matches = s.matches if s is not None else (1 + len(f.candidates) if f.status != "unverified" else 0)
    similarity = s.similarity if s is not None else (1.0 if f.status == "verified" else raw)
    return {
        "raw": raw,
        "verified": float(f.status == "verified"),
        "approximate": float(f.status == "approximate"),
        "similarity": similarity,
        "ocr": s.ocr_score if s is not None and s.ocr_score is not None else 1.0,
        "text_layer": float(s is None or s.ocr_score is None),
        "model_prob": s.model_prob if s is not None and s.model_prob is not None else 0.0,
        "model_prob_known": float(s is not None and s.model_prob is not None),
        "ambiguous": float(matches > 1 or bool(f.candidates)),
        "matches": min(1.0, math.log1p(max(0, matches - 1)) / math.log(21)),
        "away_from_box": float(s is not None and s.near_model_box is False),
        "disagree": float(bool(f.alternatives)),
        "empty": float(not text),
        "parses": _parses(f.value, text, kind),
        "number": float(bool(text) and number_of(text) is not None),
        "date": float(bool(parse_dates(text))) if text else 0.0,
        "length": min(1.0, math.log1p(len(text)) / math.log(201)),
        "digits": sum(c.isdigit() for c in text) / len(text) if text else 0.0,
        "fraction": float(bool(_FRACTION.search(text))),
        "words": min(1.0, len(text.split()) / 8),
    }


PER_FIELD = ("verified", "ambiguous", "similarity", "number", "date", "digits", "fraction", "words")


def features(f: FieldResult, kind: Kind | None, fields: Sequence[str]) -> dict[str, float]:
    """``evidence`` plus, for the fields a profile knows, the field's own intercept and its own weights of
    ``PER_FIELD`` signals (a field the profile was not fitted on gets the shared part only)."""
    ev = evidence(f, kind)
    key = field_key(f.path)
    if key in fields:
        ev[f"field={key}"] = 1.0
        for name in PER_FIELD:
            ev[f"field={key}*{name}"] = ev[name]
    return ev


def feature_names(fields: Sequence[str]) -> list[str]:
    probe = FieldResult(path="", value=None, boxes=[], confidence=0.0, status="unverified")
    base = list(evidence(probe))
    return base + [n for k in fields for n in (f"field={k}", *(f"field={k}*{p}" for p in PER_FIELD))]


@dataclass(frozen=True)
class Labelled:
    """One field as extracted, whether its value was right, and its type in the schema."""

    field: FieldResult
    right: bool
    kind: Kind | None = None


def check_labels(rows: Sequence[Labelled]) -> None:
    """Raises InputError, saying what is needed, for a set that cannot be fitted."""
    n, right = len(rows), sum(r.right for r in rows)
    if n < MIN_ROWS:
        raise InputError(f"{n} labelled field{'s' if n != 1 else ''} is too few to fit a calibration profile: "
                         f"it needs at least {MIN_ROWS}, with at least {MIN_EACH} right and {MIN_EACH} wrong; add "
                         "gold documents (or review more extractions)")
    if right == n or right == 0:
        raise InputError(f"all {n} labelled fields are {'right' if right else 'wrong'}: there is nothing to tell "
                         "a right value from a wrong one by; add documents the model gets "
                         f"{'wrong' if right else 'right'} (at least {MIN_EACH})")
    if min(right, n - right) < MIN_EACH:
        raise InputError(f"{min(right, n - right)} of {n} labelled fields are {'wrong' if right > n / 2 else 'right'}"
                         f"; a profile needs at least {MIN_EACH} of each to fit; add more labelled documents")


def _matrix(rows: Sequence[Labelled], names: Sequence[str], fields: Sequence[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    x = np.zeros((len(rows), len(names)), np.float64)
    for i, r in enumerate(rows):
        for name, v in features(r.field, r.kind, fields).items():
            x[i, index[name]] = v
    return x


def fit(rows: Sequence[Labelled], *, model: str, schema_hash: str, source: str, method: Choice = "auto",
        version: int = 1) -> CalibrationProfile:
    """Fit a profile on labelled fields. Raises InputError for too few rows or one-sided labels."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    check_labels(rows)
    chosen = ("isotonic" if len(rows) >= ISOTONIC_FROM else "platt") if method == "auto" else method
    fields = sorted({field_key(r.field.path) for r in rows})
    names = feature_names(fields)
    x = _matrix(rows, names, fields)
    y = np.array([r.right for r in rows], np.int64)
    lr = LogisticRegression(C=1.0, max_iter=2000)
    folds = StratifiedKFold(n_splits=min(FOLDS, int(min(y.sum(), len(y) - y.sum()))), shuffle=True, random_state=0)
    cv_score = cross_val_predict(lr, x, y, cv=folds, method="decision_function")
    lr.fit(x, y)
    iso_x: list[float] = []
    iso_y: list[float] = []
    cv_prob = 1.0 / (1.0 + np.exp(-cv_score))
    if chosen == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(cv_score, y)
        # never 0 or 1: a profile fitted on finite labels cannot promise certainty
        iso_x, iso_y = iso.X_thresholds_.tolist(), np.clip(iso.y_thresholds_, SURE_AT_MOST[0], SURE_AT_MOST[1]).tolist()
        # the isotonic step's own error, estimated on folds as well
        cv_prob = np.empty(len(y))
        for train, test in folds.split(x, y):
            step = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(cv_score[train], y[train])
            cv_prob[test] = np.clip(step.predict(cv_score[test]), *SURE_AT_MOST)
    raw = [evidence(r.field, r.kind)["raw"] for r in rows]
    return CalibrationProfile(
        id=uuid.uuid4().hex, model=model, schema_hash=schema_hash, version=version, created_at=datetime.now(UTC),
        method=chosen, features=names, coef=[round(float(c), 6) for c in lr.coef_[0]],
        intercept=round(float(lr.intercept_[0]), 6), isotonic_x=iso_x, isotonic_y=iso_y, rows=len(rows),
        right=int(y.sum()), source=source, ece_raw=ece(list(zip(raw, y.astype(bool), strict=True))),
        ece_cv=ece(list(zip(cv_prob.tolist(), y.astype(bool), strict=True))))


def probability(profile: CalibrationProfile, f: FieldResult, kind: Kind | None = None) -> float:
    """The probability, by ``profile``, that the field's value is right."""
    fields = [n[len("field="):] for n in profile.features if n.startswith("field=") and "*" not in n]
    feats = features(f, kind, fields)
    score = profile.intercept + sum(c * feats.get(n, 0.0) for n, c in zip(profile.features, profile.coef,
                                                                          strict=True))
    if profile.isotonic_x:
        return float(np.interp(score, profile.isotonic_x, profile.isotonic_y))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, score))))


def applies(profile: CalibrationProfile, ex: Extraction) -> bool:
    return profile.model == ex.model and profile.schema_hash == ex.schema_hash


def calibrate(ex: Extraction, profile: CalibrationProfile, kinds: Mapping[str, Kind]) -> Extraction:
    """``ex`` with every field's ``confidence`` the profile's probability (``raw_confidence`` kept). Raises
    InputError for a profile of another model or schema (never applied there)."""
    if not applies(profile, ex):
        raise InputError(f"calibration profile {profile.ref} is for model {profile.model!r} and schema "
                         f"{profile.schema_hash}; this extraction is {ex.model!r}, schema {ex.schema_hash}")
    fields = []
    for f in ex.fields:
        raw = f.raw_confidence if f.raw_confidence is not None else f.confidence
        p = probability(profile, f, kinds.get(field_key(f.path)))
        fields.append(f.model_copy(update={"confidence": round(p, 4), "raw_confidence": raw, "calibrated": True}))
    return ex.model_copy(update={"fields": fields, "calibration": profile.ref, "calibration_note": None})


def reliability(pairs: Sequence[tuple[float, bool]], buckets: int = BUCKETS) -> dict[str, Any]:
    """``pairs``: (confidence 0–1, right). Returns ``buckets`` (lo, hi, n, confidence = mean confidence, accuracy)
    and ``ece`` (expected calibration error: the bucket-weighted |accuracy − confidence|). A well-calibrated 0.9 is
    right nine times in ten."""
    rows: list[dict[str, Any]] = []
    for b in range(buckets):
        lo, hi = b / buckets, (b + 1) / buckets
        inside = [(c, ok) for c, ok in pairs if lo <= c < hi or (b == buckets - 1 and c >= 1.0)]
        n = len(inside)
        rows.append({"lo": lo, "hi": hi, "n": n,
                     "confidence": round(sum(c for c, _ in inside) / n, 4) if n else None,
                     "accuracy": round(sum(ok for _, ok in inside) / n, 4) if n else None})
    total = sum(r["n"] for r in rows)
    gap = sum(r["n"] / total * abs(float(r["accuracy"]) - float(r["confidence"])) for r in rows if r["n"]) \
        if total else 0.0
    return {"buckets": rows, "ece": round(gap, 4), "n": total}


def ece(pairs: Sequence[tuple[float, bool]], buckets: int = BUCKETS) -> float:
    """Expected calibration error of (confidence, right) pairs (``reliability``)."""
    return float(reliability(pairs, buckets)["ece"])
