"""Who may do what: API keys, their roles and collections, the principal a request acts as, and the audit log.

Collections are the unit of tenancy. A principal sees only its collections (``scope``; None for every collection,
as an admin or the local shells do) and acts up to its role: ``reader`` (search, ask, locate, list, page images),
``writer`` (and upload, delete, extract, jobs, corrections), ``admin`` (and keys, audit, every collection)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["reader", "writer", "admin"]
ROLES: tuple[Role, ...] = ("reader", "writer", "admin")
Scope = frozenset[str] | None  # the collections a principal sees; None: all of them

KEY_PREFIX = "pl_"  # keys look like pl_<43 url-safe characters>: easy to spot in a leaked log or a secret scanner
MAX_KEY_NAME = 100


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Principal(_Frozen):
    """The identity a request or command acts as."""

    name: str
    role: Role
    collections: tuple[str, ...] | None = Field(None, description="the collections it sees; null: every one")

    @property
    def scope(self) -> Scope:
        return None if self.collections is None or self.role == "admin" else frozenset(self.collections)

    def can(self, role: Role) -> bool:
        """Whether this principal's role includes ``role``'s rights."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, collection: str) -> bool:
        scope = self.scope
        return scope is None or collection in scope


LOCAL_ADMIN = Principal(name="local", role="admin")  # the CLI on its own data dir, and a server without keys


class KeyInfo(_Frozen):
    """An API key as listed: never the key itself (only its hash is stored)."""

    name: str
    role: Role
    collections: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    hint: str = Field(description="the key's last 4 characters, to tell keys apart")

    @property
    def active(self) -> bool:
        from datetime import UTC

        now = datetime.now(UTC)
        return self.revoked_at is None and (self.expires_at is None or _aware(self.expires_at) > now)


class NewKey(_Frozen):
    """A key just created: the only time ``key`` is shown."""

    key: str
    info: KeyInfo


AuditOutcome = Literal["ok", "denied", "failed"]


class AuditEvent(_Frozen):
    """One row of the audit log: a write (or a denied request) with who, what, where and how it ended."""

    id: int
    at: datetime
    key_name: str
    role: str
    action: str = Field(description="route (`DELETE /documents/{ref}`) or command (`keys create`)")
    collection: str | None = None
    doc_id: str | None = None
    outcome: AuditOutcome
    detail: str = ""


def _aware(t: datetime) -> datetime:
    from datetime import UTC

    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
