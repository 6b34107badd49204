"""API keys (only their SHA-256 is kept) and the append-only audit log, in the catalog's database.

The tables live beside the catalog's (same metadata, so ``Catalog`` creates and migrates them in place on
SQLite and PostgreSQL alike). Nothing here updates or deletes an audit row."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Integer, String, Table, Text, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from schemas.access import AuditEvent, AuditOutcome, KeyInfo, Principal, Role
from schemas.errors import Conflict, NotFound
from store.sql_errors import translated
from store.tables import metadata

api_keys = Table(
    "api_keys", metadata,
    Column("name", String(100), primary_key=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("collections", Text, nullable=True),  # JSON list; NULL: every collection
    Column("hint", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("key_name", String(100), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("action", String(200), nullable=False),
    Column("collection", Text, nullable=True),
    Column("doc_id", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t if t.tzinfo is not None else t.replace(tzinfo=UTC))


def _info(row: Any) -> KeyInfo:
    cols = json.loads(row.collections) if row.collections is not None else None
    return KeyInfo(name=row.name, role=row.role, collections=tuple(cols) if cols is not None else None,
                   created_at=_utc(row.created_at), expires_at=_utc(row.expires_at),
                   revoked_at=_utc(row.revoked_at), hint=row.hint)


@translated
class KeyStore:
    """The API keys, by name; looked up by the hash of the key a request sends."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, name: str, key: str, role: Role, collections: Sequence[str] | None,
            expires_at: datetime | None) -> KeyInfo:
        """Store a new key (its hash). Raises Conflict when the name is taken (a revoked key's name included:
        the audit log names keys, so a name means one key forever)."""
        row = {"name": name, "key_sha256": key_hash(key), "role": role, "hint": key[-4:],
               "collections": json.dumps(list(collections)) if collections is not None else None,
               "created_at": datetime.now(UTC), "expires_at": expires_at, "revoked_at": None}
        try:
            with self.engine.begin() as c:
                c.execute(insert(api_keys).values(**row))
        except IntegrityError as e:
            raise Conflict(f"a key named '{name}' exists already (names are never reused, revoked keys' included); "
                           "choose another --name") from e
        return self.get(name)

    def get(self, name: str) -> KeyInfo:
        with self.engine.connect() as c:
            row = c.execute(select(api_keys).where(api_keys.c.name == name)).first()
        if row is None:
            raise NotFound(f"no key named '{name}'; list them with: pagelens keys list")
        return _info(row)

    def list(self) -> list[KeyInfo]:
        with self.engine.connect() as c:
            return [_info(r) for r in c.execute(select(api_keys).order_by(api_keys.c.created_at)).all()]

    def revoke(self, name: str) -> KeyInfo:
        """Revoke a key now (it stays listed, revoked). Raises NotFound."""
        with self.engine.begin() as c:
            done = c.execute(update(api_keys).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                             .values(revoked_at=datetime.now(UTC))).rowcount
        info = self.get(name)
        if not done and info.revoked_at is None:
            raise NotFound(f"no key named '{name}'")
        return info

    def any(self) -> bool:
        with self.engine.connect() as c:
            return c.execute(select(api_keys.c.name).limit(1)).first() is not None

    def principal(self, key: str) -> Principal | None:
        """The principal of an active key, or None (unknown, revoked or expired). One primary-key-like lookup by
        the key's hash: comparing hashes leaks nothing about the key."""
        with self.engine.connect() as c:
            row = c.execute(select(api_keys).where(api_keys.c.key_sha256 == key_hash(key))).first()
        if row is None:
            return None
        info = _info(row)
        if not info.active:
            return None
        return Principal(name=info.name, role=info.role, collections=info.collections)


@translated
class AuditLog:
    """Append-only: ``record`` adds a row; nothing changes or removes one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, who: Principal | None, action: str, outcome: AuditOutcome, *, collection: str | None = None,
               doc_id: str | None = None, detail: str = "") -> None:
        row = {"at": datetime.now(UTC), "key_name": who.name if who else "(no valid key)",
               "role": who.role if who else "-", "action": action[:200], "collection": collection,
               "doc_id": doc_id, "outcome": outcome, "detail": detail[:2000]}
        with self.engine.begin() as c:
            c.execute(insert(audit_log).values(**row))

    def events(self, *, since: datetime | None = None, key_name: str | None = None,
               limit: int = 1000) -> list[AuditEvent]:
        """The newest events first."""
        q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if since is not None:
            q = q.where(audit_log.c.at >= since)
        if key_name is not None:
            q = q.where(audit_log.c.key_name == key_name)
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [AuditEvent(id=r.id, at=_utc(r.at), key_name=r.key_name, role=r.role,
                           action=r.action, collection=r.collection, doc_id=r.doc_id, outcome=r.outcome,
                           detail=r.detail) for r in rows]

