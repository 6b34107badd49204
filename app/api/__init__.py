"""The HTTP API (FastAPI): upload/list/delete documents, search, ask, extract, locate, page images with boxes,
health; uploads and batch extractions run as jobs (``/jobs``, app/jobs.py); API keys and the audit log. OpenAPI at
/docs. Every guarded request acts as the key it sends in X-API-Key (``app.access``: its role and collections),
checked with the body size before any body is read (``RequestGuard``); with no key configured anywhere the API
is open, as the local admin.
Every error is JSON: ``{"error": {"code", "message"}}`` with a 4xx/5xx status chosen by who made the mistake."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.access import Gatekeeper
from app.api import access, calibration, conversations, documents, jobs, queries
from app.api.guard import (
    DOCS_ASSETS,
    RequestGuard,
    auth_failure_limiter,
    body_limit,
    error,
    error_response,
    internal_error,
)
from app.jobs import JobRunner
from app.service import Service
from schemas.access import LOCAL_ADMIN
from schemas.errors import PageLensError
from schemas.settings import Settings

__all__ = ["RequestGuard", "create_app", "open_stores"]
log = logging.getLogger(__name__)


def open_stores(svc: Service) -> None:
    """Open the catalog and the vector index now, so that the API holds the embedded stores from its start (a
    CLI job cannot take them in between), and clear what killed processes left behind (upload folders, partial
    documents, orphaned stored files). Raises StoreError/StoreLocked saying which store and what to do."""
    _ = svc.catalog
    _ = svc.index
    svc.reconcile()


def create_app(settings: Settings | None = None, service: Service | None = None, *,
               local_token: str | None = None, host: str = "127.0.0.1") -> FastAPI:
    """The API over ``service`` (or a new one from ``settings``); its stores are opened here (fails fast with
    StoreError when another process holds them). ``local_token``: a key the shells of this data dir use (it
    opens what PAGELENS_API_KEY opens; ``pagelens serve`` records it, see ``store.owner``). ``host``: where it is
    served (the MCP endpoint checks the Host header of loopback servers against DNS rebinding)."""
    svc = service or Service(settings)
    s = svc.settings
    open_stores(svc)
    runner = JobRunner(svc)
    runner.start()  # resumes the jobs a killed server left queued or running
    mcp = _mcp(svc, host)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            if mcp is None:
                yield
            else:
                async with mcp.session_manager.run():
                    yield
        finally:
            runner.stop()
            svc.close()

    app = FastAPI(title="PageLens", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Grounded search, answers and structured extraction over PDFs and page images; "
                              "an MCP server (Streamable HTTP) at /mcp.")
    _offline_docs(app)
    app.state.service = svc
    app.state.jobs = runner
    gate = Gatekeeper(svc.catalog, bootstrap_key=s.api_key, local_token=local_token)
    app.state.gate = gate
    failures = auth_failure_limiter(s.access)
    app.add_middleware(RequestGuard, gate=gate, max_body=body_limit(s), limits=s.access, failures=failures,
                       on_denied=lambda who, action, why: svc.audit(who, action, "denied", detail=why))

    # one router per area (as vLLM's entrypoints)
    for area in (documents, queries, conversations, jobs, access, calibration):
        app.include_router(area.router)

    @app.exception_handler(PageLensError)
    def _pagelens_error(_r: Request, e: PageLensError) -> JSONResponse:
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    def _bad_request(_r: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []))
        return error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    def _http(_r: Request, e: StarletteHTTPException) -> JSONResponse:
        return error(e.status_code, "http_error", str(e.detail))

    @app.exception_handler(Exception)
    def _unexpected(_r: Request, e: Exception) -> JSONResponse:
        return internal_error(e)

    @app.get("/health", responses={503: {"description": "a store is down or locked; `failed` says which"}})
    def health(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        """Probes the catalog and the vector index: 200 ``ok``, or 503 ``degraded`` with the parts that failed.
        Document and page counts only with a valid key (or when none is configured), of its collections."""
        client = request.client.host if request.client else "?"
        who = None
        if failures.blocked(client) is None:  # a public route must not become a key-guessing oracle
            try:
                who = gate.principal(x_api_key)
            except PageLensError:
                who = None
            if who is None and x_api_key:
                failures.take(client)
        report = svc.health(counts=who is not None, who=who or LOCAL_ADMIN)
        report["auth"] = "open" if gate.open() else "keys"
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    if mcp is not None:  # its route, after the API's: /mcp behind the same RequestGuard (each call as its key)
        http = mcp.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=True,
                                       host=host)
        app.router.routes.extend(r for r in http.routes if getattr(r, "path", "") == "/mcp")
    return app


def _mcp(svc: Service, host: str) -> Any:
    """The MCP server of /mcp, or None (logged) when the MCP SDK is not installed."""
    try:
        from app.mcp_server import build_server, http_acting

        return build_server(http_acting(svc))
    except ModuleNotFoundError as e:
        log.warning("no /mcp: the MCP SDK is not installed (%s); pip install 'pagelens[server]'", e.name)
        return None


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) with its assets served from the ``swagger-ui-bundle`` package: it works with no
    internet, as FastAPI documents for self-hosting."""
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="PageLens API",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
