"""The catalog's calibration profiles: every fitted version kept, the newest for a model and schema applied."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from schemas.calibration import CalibrationProfile
from schemas.errors import NotFound
from store.sql_errors import translated
from store.tables import calibration_profiles as profiles


@translated
class Calibrations:
    """Part of ``store.catalog.Catalog`` (which owns ``engine``)."""

    engine: Engine

    def save_calibration(self, profile: CalibrationProfile) -> CalibrationProfile:
        """Store ``profile`` as the next version for its model and schema; returns it with that version."""
        for _ in range(5):  # two fits of the same model and schema at once: the loser takes the next number
            with self.engine.connect() as c:
                top = c.execute(select(func.max(profiles.c.version)).where(
                    profiles.c.model == profile.model, profiles.c.schema_hash == profile.schema_hash)).scalar()
            saved = profile.model_copy(update={"version": int(top or 0) + 1})
            try:
                with self.engine.begin() as c:
                    c.execute(insert(profiles).values(id=saved.id, model=saved.model, schema_hash=saved.schema_hash,
                                                      version=saved.version, created_at=saved.created_at,
                                                      body=saved.model_dump_json()))
                return saved
            except IntegrityError:
                continue
        raise RuntimeError("could not number the calibration profile: too many fits at once")

    def calibrations(self, schema_hash: str | None = None) -> list[CalibrationProfile]:
        """Every profile (of one schema), newest first."""
        q = select(profiles.c.body).order_by(profiles.c.created_at.desc(), profiles.c.version.desc())
        if schema_hash is not None:
            q = q.where(profiles.c.schema_hash == schema_hash)
        with self.engine.connect() as c:
            return [CalibrationProfile.model_validate_json(b) for b in c.execute(q).scalars()]

    def calibration_for(self, model: str, schema_hash: str) -> CalibrationProfile | None:
        """The newest profile for this model and schema, if any."""
        with self.engine.connect() as c:
            body = c.execute(select(profiles.c.body).where(
                profiles.c.model == model, profiles.c.schema_hash == schema_hash)
                .order_by(profiles.c.version.desc()).limit(1)).scalar()
        return CalibrationProfile.model_validate_json(body) if body is not None else None

    def delete_calibration(self, ref: str) -> CalibrationProfile:
        """Delete one profile version by id (or an unambiguous id prefix). Raises NotFound."""
        found = [p for p in self.calibrations() if p.id.startswith(ref)] if ref else []
        if len(found) != 1:
            raise NotFound(f"no calibration profile '{ref[:64]}'" + (" (the prefix is ambiguous)" if found else "")
                           + "; list them with pagelens calibrate list")
        with self.engine.begin() as c:
            c.execute(delete(profiles).where(profiles.c.id == found[0].id))
        return found[0]
