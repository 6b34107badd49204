"""Routes: calibration profiles (admin) — the fitted maps from a field's evidence to the probability that its value
is right, one per model and schema, every version kept (``grounding.calibration``; fitted by ``pagelens calibrate
fit``, which extracts through this server and posts the profile here)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import GUARDED, Admin, Svc
from app.api.models import StoredExtraction
from schemas.calibration import CalibrationProfile

router = APIRouter(tags=["calibration"])


@router.get("/calibration/profiles", dependencies=GUARDED)
def list_profiles(svc: Svc, who: Admin,
                  schema_hash: Annotated[str | None, Query(max_length=64)] = None) -> list[CalibrationProfile]:
    """Every profile (of one schema), newest first; the newest version for a model and schema is applied."""
    return svc.calibrations(schema_hash, who=who)


@router.post("/calibration/profiles", dependencies=GUARDED, status_code=201)
def save_profile(svc: Svc, who: Admin, profile: CalibrationProfile) -> CalibrationProfile:
    """Keep a fitted profile as the next version for its model and schema (the version is assigned here)."""
    return svc.save_calibration(profile, who=who)


@router.delete("/calibration/profiles/{profile_id}", dependencies=GUARDED)
def delete_profile(svc: Svc, who: Admin, profile_id: str) -> CalibrationProfile:
    """Delete one version (id or prefix): the previous version, if any, applies again."""
    return svc.delete_calibration(profile_id, who=who)


@router.get("/calibration/corrections", dependencies=GUARDED)
def corrections(svc: Svc, who: Admin, schema_hash: Annotated[str, Query(min_length=1, max_length=64)]
                ) -> list[StoredExtraction]:
    """The reviewed (hand-corrected) extractions of a schema: labels for ``pagelens calibrate fit
    --from-corrections``."""
    return [StoredExtraction(extraction=ex, corrections=c) for ex, c in svc.corrected_extractions(schema_hash, who=who)]
