"""Routes: who a key is, API keys (admin) and the audit log (admin, read-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import GUARDED, Admin, Gate, Reader, Svc
from app.api.models import KeyRequest, NewKeyOut
from schemas.access import AuditEvent, KeyInfo, Principal

router = APIRouter(tags=["access"])


@router.get("/me", dependencies=GUARDED)
def me(who: Reader) -> Principal:
    """Who the key sent is: its name, role and collections (null: every collection)."""
    return who


@router.post("/keys", dependencies=GUARDED, status_code=201)
def create_key(svc: Svc, gate: Gate, who: Admin, req: KeyRequest) -> NewKeyOut:
    """A new API key, answered once as ``key`` (only its SHA-256 is kept)."""
    made = svc.create_key(req.name, req.role, req.collections, req.expires, who=who)
    gate.forget()
    return NewKeyOut(key=made.key, **made.info.model_dump())


@router.get("/keys", dependencies=GUARDED)
def list_keys(svc: Svc, who: Admin) -> list[KeyInfo]:
    """Every key (never the key itself): name, role, collections, created, expires, revoked, last 4 chars."""
    return svc.list_keys()


@router.delete("/keys/{name}", dependencies=GUARDED)
def revoke_key(svc: Svc, gate: Gate, who: Admin, name: str) -> KeyInfo:
    """Revoke a key: it stops working at once."""
    info = svc.revoke_key(name, who=who)
    gate.forget()
    return info


@router.get("/audit", dependencies=GUARDED)
def audit(svc: Svc, who: Admin, since: datetime | None = None, key: Annotated[str | None, Query(max_length=100)] = None,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[AuditEvent]:
    """The audit log, newest first: every write and every denied request (read-only: no route changes it)."""
    return svc.audit_events(since=since, key_name=key, limit=limit)

