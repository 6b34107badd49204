"""The catalog's stored extractions: results with provenance, and the hand corrections beside them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from schemas.answers import Extraction
from schemas.errors import NotFound
from store.sql_errors import translated
from store.tables import extractions, now


@translated
class Extractions:
    """Part of ``store.catalog.Catalog`` (which owns ``engine``)."""

    engine: Engine

    def save_extraction(self, ex: Extraction, *, model: str | None = None, doc_ids: Sequence[str] = ()) -> None:
        """Store an extraction. ``model``: the model name as configured (the key ``find_extraction`` matches;
        a server may report another name in ``ex.model``); ``doc_ids``: the documents asked for (a long
        document's extraction uses only some of their pages)."""
        ids = sorted(set(doc_ids) or {p.doc_id for p in ex.pages_used})
        with self.engine.begin() as c:
            c.execute(insert(extractions).values(
                id=ex.id, created_at=ex.created_at or now(), model=model or ex.model, schema_hash=ex.schema_hash,
                prompt_hash=ex.prompt_hash, doc_ids=json.dumps(ids), result=ex.model_dump_json(), corrections="{}"))

    def find_extraction(self, doc_id: str, model: str, schema_hash: str, prompt_hash: str) -> Extraction | None:
        """The newest extraction of exactly this one document with this model, schema and prompt, if any."""
        with self.engine.connect() as c:
            row = c.execute(select(extractions.c.result).where(
                extractions.c.doc_ids == json.dumps([doc_id]), extractions.c.model == model,
                extractions.c.schema_hash == schema_hash, extractions.c.prompt_hash == prompt_hash)
                .order_by(extractions.c.created_at.desc()).limit(1)).first()
        return Extraction.model_validate_json(row.result) if row is not None else None

    def get_extraction(self, ex_id: str) -> tuple[Extraction, dict[str, Any]]:
        """The extraction and its hand corrections (path -> value). Raises NotFound."""
        with self.engine.connect() as c:
            row = c.execute(select(extractions).where(extractions.c.id == ex_id)).first()
        if row is None:
            raise NotFound(f"no extraction {ex_id}")
        return Extraction.model_validate_json(row.result), json.loads(row.corrections)

    def extraction_doc_ids(self, ex_id: str) -> list[str]:
        """The documents an extraction was asked for. Raises NotFound."""
        with self.engine.connect() as c:
            raw = c.execute(select(extractions.c.doc_ids).where(extractions.c.id == ex_id)).scalar()
        if raw is None:
            raise NotFound(f"no extraction {ex_id[:64]}")
        return list(json.loads(raw))

    def corrected_extractions(self, schema_hash: str, limit: int = 100_000) -> list[tuple[Extraction, dict[str, Any]]]:
        """The extractions of this schema that a reviewer corrected (any field), with their corrections."""
        with self.engine.connect() as c:
            rows = c.execute(select(extractions.c.result, extractions.c.corrections).where(
                extractions.c.schema_hash == schema_hash, extractions.c.corrections != "{}")
                .order_by(extractions.c.created_at).limit(limit)).all()
        return [(Extraction.model_validate_json(r.result), json.loads(r.corrections)) for r in rows]

    def correct_extraction(self, ex_id: str, path: str, value: Any) -> None:
        """Keep a hand correction of one field with the result (the model's value stays too)."""
        _, corr = self.get_extraction(ex_id)
        corr[path] = value
        with self.engine.begin() as c:
            c.execute(update(extractions).where(extractions.c.id == ex_id).values(corrections=json.dumps(corr)))
