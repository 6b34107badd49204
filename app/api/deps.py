"""What the routes depend on, as FastAPI dependencies: the service, the job runner, the key checker, and the
principal a request acts as, by role (``Reader``, ``Writer``, ``Admin``: 403, recorded, beyond the role)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from app.access import BOOTSTRAP, Gatekeeper
from app.jobs import JobRunner
from app.service import Service
from schemas.access import LOCAL_ADMIN, Principal, Role
from schemas.errors import Forbidden, RateLimited
from schemas.names import check_name


def _service(request: Request) -> Service:
    return request.app.state.service


def _runner(request: Request) -> JobRunner:
    return request.app.state.jobs


def _gate(request: Request) -> Gatekeeper:
    return request.app.state.gate


Svc = Annotated[Service, Depends(_service)]
Runner = Annotated[JobRunner, Depends(_runner)]
Gate = Annotated[Gatekeeper, Depends(_gate)]
# RequestGuard checks the key before the body is read; this only declares it in the OpenAPI schema
GUARDED = [Depends(APIKeyHeader(name="X-API-Key", auto_error=False))]


def need(role: Role) -> Any:
    """The dependency of a route that needs ``role``: the request's principal (set by RequestGuard), or 403,
    recorded in the audit log."""
    def acting(request: Request) -> Principal:
        who: Principal = request.state.principal
        if not who.can(role):
            request.app.state.service.audit(who, f"{request.method} {request.url.path}", "denied",
                                            detail=f"needs the {role} role")
            raise Forbidden(f"key '{who.name}' is a {who.role}; this needs the {role} role")
        return who
    return Depends(acting)


Reader = Annotated[Principal, need("reader")]
Writer = Annotated[Principal, need("writer")]
Admin = Annotated[Principal, need("admin")]


def writable(svc: Service, who: Principal, collection: str | None) -> str:
    """The collection ``who`` writes to (the default when None), checked. Raises Forbidden (recorded)."""
    name = check_name("collection", collection) if collection is not None else svc.settings.default_collection
    if not who.sees(name):
        svc.audit(who, "write", "denied", collection=name, detail="collection outside the key's scope")
        raise Forbidden(f"key '{who.name}' may not write to collection '{name[:200]}'")
    return name


def fair_share(svc: Service, who: Principal) -> None:
    """Raises RateLimited (429 + Retry-After) when ``who`` has its share of jobs queued or running already."""
    if who.name in (LOCAL_ADMIN.name, BOOTSTRAP.name):
        return
    cap = svc.settings.access.max_active_jobs
    if svc.catalog.queued_jobs_of(who.name) >= cap:
        raise RateLimited(f"key '{who.name}' has {cap} jobs queued or running (PAGELENS_ACCESS__MAX_ACTIVE_JOBS); "
                          "wait for one to end", retry_after_s=5)
