"""Calibration profiles in the service: labels from a gold set or from reviewers' corrections, a profile fitted on
them (``grounding.calibration.fit``), and the newest matching profile applied to each new extraction.

Labels from corrections: a field a reviewer corrected to another value was wrong, one "corrected" to the value
the model gave was confirmed right; the other fields of a record the reviewer corrected are taken as right (they
were reviewed, and left as they were)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from grounding.calibration import Choice, Labelled, field_key, fit
from schemas.answers import Extraction
from schemas.calibration import CalibrationProfile
from schemas.errors import InputError, PageLensError, StoreError


def schema_identity(schema: Any) -> tuple[dict[str, Any], str, dict[str, str]]:
    """(the schema with refs inlined, its hash as extractions record it, each leaf's type)."""
    from vlm.structured import inline_refs, schema_hash
    from vlm.user_schema import leaf_kinds, load_schema

    user_schema, _ = load_schema(schema)
    plain = inline_refs(user_schema)
    return plain, schema_hash(plain), leaf_kinds(plain)


def labels_from_gold(svc: Any, gold: Sequence[Any], schema: Any, *, max_pages: int = 8,
                     on_item: Callable[[], None] | None = None) -> tuple[list[Labelled], list[Extraction],
                                                                         list[dict[str, Any]]]:
    """Extract every gold document (``app.evaluation.ExtractGold``) and label each gold field right or wrong as
    ``pagelens eval extract`` scores it (exact after normalisation). Returns (labels, extractions, errors)."""
    from app.evaluation import _resolver, _unknown_docs, leaves, same_value

    _, _, kinds = schema_identity(schema)
    resolve = _resolver(svc.get_document)
    errors = _unknown_docs((g.doc for g in gold), resolve)
    rows: list[Labelled] = []
    made: list[Extraction] = []
    for g in gold:
        doc_id = resolve(g.doc)
        if doc_id is not None:
            try:
                ex = svc.extract(schema, [doc_id], max_pages=max_pages, save=False)
            except StoreError:
                raise
            except PageLensError as e:
                errors.append({"id": g.id, "error": f"{e.code}: {e.message}"})
            else:
                made.append(ex)
                got = {f.path: f for f in ex.fields}
                for path, want in leaves(g.data).items():
                    f = got.get(path)
                    if f is not None:
                        rows.append(Labelled(f, same_value(want, f.value), kinds.get(field_key(path))))
        if on_item:
            on_item()
    return rows, made, errors


def labels_from_corrections(pairs: Sequence[tuple[Extraction, dict[str, Any]]],
                            kinds: dict[str, str]) -> list[Labelled]:
    """Labels from reviewed records (``Catalog.corrected_extractions``): see the module's note."""
    from app.evaluation import same_value

    rows = []
    for ex, corrections in pairs:
        for f in ex.fields:
            right = same_value(corrections[f.path], f.value) if f.path in corrections else True
            rows.append(Labelled(f, right, kinds.get(field_key(f.path))))
    return rows


def fit_profile(rows: Sequence[Labelled], made: Sequence[Extraction], *, schema_hash: str, source: str,
                method: Choice = "auto", model: str | None = None) -> CalibrationProfile:
    """Fit a profile for the model that made the extractions (the one most of them name, or ``model``)."""
    names = Counter(ex.model for ex in made)
    if model is None:
        if not names:
            raise InputError("no extraction to fit on: none of the gold documents could be extracted (see the "
                             "errors above)")
        model = names.most_common(1)[0][0]
    return fit(rows, model=model, schema_hash=schema_hash, source=source, method=method)


def apply_profile(ex: Extraction, profiles: Sequence[CalibrationProfile], kinds: dict[str, str]) -> Extraction:
    """``ex`` calibrated by the newest profile for its model and schema; with none, ``ex`` as it is, and a note
    when profiles exist for this schema with another model, or for this model with other schemas."""
    from grounding.calibration import applies, calibrate

    mine = [p for p in profiles if applies(p, ex)]
    if mine:
        return calibrate(ex, max(mine, key=lambda p: p.version), kinds)
    other_model = sorted({p.model for p in profiles if p.schema_hash == ex.schema_hash})
    if other_model:
        note = (f"no calibration profile for model {ex.model!r} and this schema (there is one for "
                f"{', '.join(repr(m) for m in other_model[:3])}): not applied; confidence is the verifier's score. "
                "Fit one for this model: pagelens calibrate fit")
    elif any(p.model == ex.model for p in profiles):
        note = (f"the calibration profiles of model {ex.model!r} are for other schemas, not {ex.schema_hash}: not "
                "applied; confidence is the verifier's score. Fit one for this schema: pagelens calibrate fit")
    else:
        return ex
    return ex.model_copy(update={"calibration_note": note})
