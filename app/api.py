"""The HTTP API (FastAPI): upload/list/delete documents, search, ask, extract, locate, page images with boxes,
health; uploads and batch extractions run as jobs (``/jobs``, app/jobs.py); API keys and the audit log. OpenAPI at
/docs. Every guarded request acts as the key it sends in X-API-Key (``app.access``: its role and collections),
checked with the body size before any body is read (``RequestGuard``); with no key configured anywhere the API
is open, as the local admin.
Every error is JSON: ``{"error": {"code", "message"}}`` with a 4xx/5xx status chosen by who made the mistake."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access import BOOTSTRAP, Gatekeeper, RateLimiter
from app.jobs import JobRunner, new_job_id, upload_paths
from app.service import Service
from schemas.access import LOCAL_ADMIN, AuditEvent, KeyInfo, Principal, Role
from schemas.answers import Answer, Extraction, LocateResult
from schemas.coords import BBox
from schemas.documents import Document
from schemas.errors import (
    Busy,
    ConfigError,
    Conflict,
    DiskFull,
    Forbidden,
    InputError,
    ModelBehaviorError,
    ModelHTTPError,
    NotFound,
    PageLensError,
    PasswordRequired,
    RateLimited,
    RenderFailed,
    StoreError,
    TooLarge,
    Unauthorized,
    UnsupportedType,
    WrongPassword,
)
from schemas.jobs import Job, JobState
from schemas.names import check_name
from schemas.results import Hit, IngestReport
from schemas.settings import AccessSettings, Settings
from store.pages import MAX_BOXES
from store.space import check_free, disk_full_from

log = logging.getLogger(__name__)

UPLOAD_TYPES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
MAX_NAME_BYTES = 255  # a file name's length in UTF-8 bytes (what file systems allow)
UPLOAD_FILES_FACTOR = 2  # one request body may carry up to twice the per-file upload limit (several files)
BODY_OVERHEAD = 2**20  # bytes a body may have beyond the files: form boundaries and fields, JSON requests
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
JSON_MAX_BODY = 2 * 2**20  # any body but an upload's: the largest schema (256 KB) and 1,000 document refs fit
DOCS_ASSETS = "/docs-assets"  # Swagger UI's scripts and styles, served from the installed package (no CDN)
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer")]
# JSON and PNG responses load nothing and are framed by nothing; HTML (/docs) keeps its CDN scripts.
STRICT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


DocRef = Annotated[str, Field(min_length=1, max_length=300)]  # an id, id prefix or file name
MAX_DOC_REFS = 1000


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=100)
    collection: str | None = Field(None, max_length=200)
    doc_ids: list[DocRef] | None = Field(None, max_length=MAX_DOC_REFS)


class DocumentSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=100)
    collection: str | None = Field(None, max_length=200)


class AskRequest(SearchRequest):
    k: int = Field(3, ge=1, le=20)


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the fields to extract")
    doc_ids: list[DocRef] = Field(min_length=1, max_length=MAX_DOC_REFS)
    max_pages: int = Field(8, ge=1, le=64)
    save: bool = Field(True, description="keep the extraction in the catalog (false: an evaluation run)")


class ExtractJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the fields to extract")
    doc_ids: list[DocRef] | None = Field(None, min_length=1, max_length=MAX_DOC_REFS,
                                         description="the documents (ids, id prefixes, names); "
                                      "leave out for every document")
    max_pages: int = Field(8, ge=1, le=64)


class StoredExtraction(BaseModel):
    extraction: Extraction
    corrections: dict[str, Any] = Field(description="field path -> the value a person set by hand")


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(min_length=1, max_length=1000, description="the field's path, as in the extraction")
    value: str | int | float | bool | None


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: Role
    collections: list[str] | None = Field(None, max_length=1000, description="null: every collection")
    expires: str | None = Field(None, max_length=40, description="30d, 12h, 90m or an ISO date; null: never")


class NewKeyOut(KeyInfo):
    key: str = Field(description="the key: shown this once")


class LocateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_id: DocRef
    page: int = Field(ge=1, le=1_000_000)
    value: Annotated[str, Field(max_length=10_000)] | int | float
    near: list[float] | None = Field(None, min_length=4, max_length=4)


# who made the mistake -> the HTTP status; the first class that matches wins (subclasses before their parents)
STATUS_OF: tuple[tuple[type[PageLensError] | tuple[type[PageLensError], ...], int], ...] = (
    (Unauthorized, 401), (Forbidden, 403), (Busy, 503), (RateLimited, 429), (NotFound, 404), (DiskFull, 507),
    (Conflict, 409), (TooLarge, 413), (UnsupportedType, 415), ((PasswordRequired, WrongPassword, RenderFailed), 422),
    (InputError, 400), ((ModelBehaviorError, ModelHTTPError), 502), ((ConfigError, StoreError), 503),
)


def _status(e: PageLensError) -> int:
    return next((status for kinds, status in STATUS_OF if isinstance(e, kinds)), 500)


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, **extra}})


def _internal_error(e: Exception) -> JSONResponse:
    return _error(500, "internal_error", f"an unexpected error occurred ({e.__class__.__name__}); see the server log")


def body_limit(settings: Settings) -> int:
    """The largest request body, in bytes: UPLOAD_FILES_FACTOR files at ``max_upload_mb`` plus BODY_OVERHEAD."""
    return int(settings.max_upload_mb * 2**20 * UPLOAD_FILES_FACTOR) + BODY_OVERHEAD


def _with_security_headers(send: Send) -> Send:
    """``send`` that adds SECURITY_HEADERS to every response, and STRICT_CSP to all but HTML pages."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
            extra = SECURITY_HEADERS + ([] if html else [STRICT_CSP])
            message = {**message, "headers": headers + [(k, v) for k, v in extra if k not in present]}
        await send(message)

    return send_with_headers


class RequestGuard:
    """ASGI middleware: on every route but PUBLIC_PATHS, answers 401 for a missing or wrong X-API-Key and 413
    for a Content-Length over ``max_body`` bytes *before* the body is read, and cuts a streamed (chunked) body
    off at ``max_body`` bytes with a 413. Adds the security headers to every response, errors included."""

    def __init__(self, app: ASGIApp, *, gate: Gatekeeper, max_body: int, limits: AccessSettings,
                 on_denied: Callable[[Principal | None, str, str], None], failures: RateLimiter | None = None) -> None:
        self.app = app
        self.gate = gate
        self.max_body = max_body
        self.requests = RateLimiter(limits.requests_per_minute, limits.burst)
        self.failures = failures or auth_failure_limiter(limits)
        self.on_denied = on_denied

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        if scope["path"] in PUBLIC_PATHS or scope["path"].startswith(DOCS_ASSETS + "/"):
            await self._run(scope, receive, send)
            return
        rejection = self._early_rejection(Headers(scope=scope), scope)
        if rejection is not None:
            await rejection(scope, receive, send)
            return
        await self._run_limited(scope, receive, send)

    def _early_rejection(self, headers: Headers, scope: Scope) -> JSONResponse | None:
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.failures.blocked(client)
        if wait is not None:  # key guessing: this address sent too many wrong keys; its keys are not even checked
            return _retry_later(wait, "too many requests with a wrong API key from this address")
        who = self.gate.principal(headers.get("x-api-key"))
        if who is None:
            self.failures.take(client)
            self.on_denied(None, f"{scope['method']} {scope['path']}", "unauthorized")
            return _error(401, "unauthorized", "missing, wrong, revoked or expired API key: send a valid one in the "
                                               "X-API-Key header")
        wait = None if who in (LOCAL_ADMIN, BOOTSTRAP) else self.requests.take(who.name)  # operators: no share
        if wait is not None:
            return _retry_later(wait, f"key '{who.name}' is over its share of requests "
                                      "(PAGELENS_ACCESS__REQUESTS_PER_MINUTE)")
        scope.setdefault("state", {})["principal"] = who
        length = headers.get("content-length")
        if length is not None and not length.strip().isdigit():
            return _error(400, "invalid_request", f"the Content-Length header '{length[:40]}' is not a number")
        if length is not None and int(length) > self._limit(scope):
            return self._too_large(scope)
        return None

    def _limit(self, scope: Scope) -> int:
        """Uploads may be large; every other body is JSON and gets JSON_MAX_BODY."""
        return self.max_body if scope["path"] == "/documents" and scope["method"] == "POST" else JSON_MAX_BODY

    def _too_large(self, scope: Scope) -> JSONResponse:
        if self._limit(scope) == self.max_body:
            return _error(413, "too_large", f"the request body is over {self.max_body / 2**20:.0f} MB; send fewer "
                                            "or smaller files in one request")
        return _error(413, "too_large", f"a JSON request body may have at most {JSON_MAX_BODY // 1024} KB")

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; an unexpected error still gets a JSON 500 with the security headers (then re-raised for
        the server's log)."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:
            if not started:
                await _internal_error(e)(scope, receive, send)
            raise

    async def _run_limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the body cut off at ``max_body`` bytes: past it the app sees a disconnect, its
        answer is dropped and the client gets 413."""
        seen, over, limit = 0, False, self._limit(scope)

        async def limited_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                over = seen > limit
            return {"type": "http.disconnect"} if over else message

        async def send_unless_over(message: Message) -> None:
            if not over:
                await send(message)

        try:
            await self._run(scope, limited_receive, send_unless_over)
        except Exception:
            if not over:
                raise
        if over:
            await self._too_large(scope)(scope, receive, send)


def auth_failure_limiter(limits: AccessSettings) -> RateLimiter:
    """Wrong keys per client address (key guessing), shared by the guard and the public /health."""
    return RateLimiter(limits.auth_failures_per_minute, max(1, int(limits.auth_failures_per_minute)))


def _need(role: Role) -> Any:
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


Reader = Annotated[Principal, _need("reader")]
Writer = Annotated[Principal, _need("writer")]
Admin = Annotated[Principal, _need("admin")]


def _retry_later(wait_s: float, why: str, *, status: int = 429, code: str = "rate_limited") -> JSONResponse:
    seconds = max(1, round(wait_s + 0.5))
    response = _error(status, code, f"{why}; retry in {seconds} s")
    response.headers["Retry-After"] = str(seconds)
    return response


def _client_name(raw: str | None, i: int) -> str:
    """The client's file name, made safe to write: its last path part, checked. Raises InputError naming the
    ``files`` form field."""
    name = (raw or f"upload-{i}").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InputError(f"file {i + 1} in the `files` form field has a name with control characters (such as "
                         "NUL); rename the file and upload it again")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InputError(f"file {i + 1} in the `files` form field has a name of {len(name.encode())} bytes; at most "
                         f"{MAX_NAME_BYTES} are allowed, rename the file and upload it again")
    if Path(name).suffix.lower() not in UPLOAD_TYPES or name in {".", ".."}:
        raise UnsupportedType(f"{name}: only {', '.join(sorted(UPLOAD_TYPES))} files are accepted")
    return name


def _save_upload(f: UploadFile, name: str, dest: Path, limit_mb: float) -> Path:
    """Stream one uploaded file to ``dest/name``, at most ``limit_mb`` MB. Raises TooLarge."""
    dest.mkdir()
    path = dest / name
    limit, size = int(limit_mb * 2**20), 0
    try:
        with path.open("wb") as out:
            while chunk := f.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"{name} is over the {limit_mb:g} MB upload limit")
                out.write(chunk)
    except OSError as e:
        full = disk_full_from(e, dest)
        if full is not None:
            raise full from e
        raise
    return path


def parse_boxes(boxes: str | None) -> list[tuple[BBox, str]]:
    """The ``boxes`` query parameter, ``x0,y0,x1,y1[:style];…`` in page fractions, at most MAX_BOXES boxes.
    Raises InputError naming the parameter."""
    parts = [p for p in (boxes or "").split(";") if p.strip()]
    if len(parts) > MAX_BOXES:
        raise InputError(f"the `boxes` query parameter has {len(parts)} boxes; at most {MAX_BOXES} can be drawn")
    drawn: list[tuple[BBox, str]] = []
    for part in parts:
        coords, _, style = part.partition(":")
        try:
            drawn.append((BBox.of([float(x) for x in coords.split(",")]), style or "match"))
        except ValueError as e:
            raise InputError(f"bad box '{part[:80]}' in the `boxes` query parameter: give x0,y0,x1,y1 fractions "
                             "with x0<x1, y0<y1") from e
    return drawn


def open_stores(svc: Service) -> None:
    """Open the catalog and the vector index now, so that the API holds the embedded stores from its start (a
    CLI job cannot take them in between), and clear what killed processes left behind (upload folders, partial
    documents, orphaned stored files). Raises StoreError/StoreLocked saying which store and what to do."""
    _ = svc.catalog
    _ = svc.index
    svc.reconcile()


def create_app(settings: Settings | None = None, service: Service | None = None, *,
               local_token: str | None = None) -> FastAPI:
    """The API over ``service`` (or a new one from ``settings``); its stores are opened here (fails fast with
    StoreError when another process holds them). ``local_token``: a key the shells of this data dir use (it
    opens what PAGELENS_API_KEY opens; ``pagelens serve`` records it, see ``store.owner``)."""
    svc = service or Service(settings)
    s = svc.settings
    open_stores(svc)
    runner = JobRunner(svc)
    runner.start()  # resumes the jobs a killed server left queued or running
    app = FastAPI(title="PageLens", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Grounded search, answers and structured extraction over PDFs and page images.")
    _offline_docs(app)
    app.state.service = svc
    app.state.jobs = runner
    gate = Gatekeeper(svc.catalog, bootstrap_key=s.api_key, local_token=local_token)
    app.state.gate = gate
    failures = auth_failure_limiter(s.access)
    app.add_middleware(RequestGuard, gate=gate, max_body=body_limit(s), limits=s.access, failures=failures,
                       on_denied=lambda who, action, why: svc.audit(who, action, "denied", detail=why))

    def writable(who: Principal, collection: str | None) -> str:
        """The collection ``who`` writes to (the default when None), checked. Raises Forbidden (recorded)."""
        name = check_name("collection", collection) if collection is not None else s.default_collection
        if not who.sees(name):
            svc.audit(who, "write", "denied", collection=name, detail="collection outside the key's scope")
            raise Forbidden(f"key '{who.name}' may not write to collection '{name[:200]}'")
        return name

    def fair_share(who: Principal) -> None:
        if who.name in (LOCAL_ADMIN.name, BOOTSTRAP.name):
            return
        if svc.catalog.queued_jobs_of(who.name) >= s.access.max_active_jobs:
            raise RateLimited(f"key '{who.name}' has {s.access.max_active_jobs} jobs queued or running "
                              "(PAGELENS_ACCESS__MAX_ACTIVE_JOBS); wait for one to end", retry_after_s=5)



    @app.exception_handler(PageLensError)
    def _pagelens_error(_r: Request, e: PageLensError) -> JSONResponse:
        if isinstance(e, RateLimited):
            return _retry_later(e.retry_after_s, e.message, status=_status(e), code=e.code)
        extra = {"raw_output": e.raw_output[:4000]} if isinstance(e, ModelBehaviorError) else {}
        return _error(_status(e), e.code, e.message, **extra)

    @app.exception_handler(RequestValidationError)
    def _bad_request(_r: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    def _http(_r: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, "http_error", str(e.detail))

    @app.exception_handler(Exception)
    def _unexpected(_r: Request, e: Exception) -> JSONResponse:
        return _internal_error(e)

    # RequestGuard checks the key before the body is read; this only declares it in the OpenAPI schema
    guarded = [Depends(APIKeyHeader(name="X-API-Key", auto_error=False))]

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

    @app.post("/documents", dependencies=guarded, status_code=202, response_model=None,
              responses={202: {"model": Job, "description": "queued as a job; poll the Location (/jobs/{id})"},
                         200: {"model": IngestReport, "description": "with wait=true: the ingest report"}})
    def upload(who: Writer, files: Annotated[list[UploadFile], File(description="PDF/PNG/JPEG/TIFF files")],
               collection: Annotated[str | None, Form()] = None,
               password: Annotated[str | None, Form()] = None,
               wait: Annotated[bool, Query(description="answer when the files are ingested, with the report "
                                                       "(200), instead of at once with the job (202)")] = False,
               ) -> JSONResponse:
        """Upload files to ingest. They are saved under the data dir and ingested by a job: the answer is 202 with
        the job (``job_id``, ``state``) and ``Location: /jobs/{id}`` to poll. ``?wait=true`` waits for the job and
        answers 200 with its IngestReport, as this endpoint did before jobs (the job is still listed)."""
        names = [_client_name(f.filename, i) for i, f in enumerate(files)]
        collection = writable(who, collection)
        fair_share(who)
        check_free(s.data_dir, s.ingest.min_free_mb)  # 507 now, rather than a job that cannot write
        job_id = new_job_id()
        job_dir = svc.job_dir(job_id)
        job_dir.mkdir(parents=True)
        try:  # one folder per file: each keeps the client's name
            for f, name, path in zip(files, names, upload_paths(job_dir, names), strict=True):
                _save_upload(f, name, path.parent, s.max_upload_mb)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        job = runner.submit_ingest(job_id, names, collection=collection, password=password,
                                   key_name=None if who is LOCAL_ADMIN else who.name)
        svc.audit(who, "upload", "ok", collection=collection, detail=f"job {job_id}: {', '.join(names)[:1000]}")
        where = {"Location": f"/jobs/{job_id}"}
        if not wait:
            return JSONResponse(job.model_dump(mode="json"), status_code=202, headers=where)
        ended = runner.wait(job_id)
        if ended.state == "failed":
            why = ended.error.message if ended.error else "see the server log"
            return _error(500, ended.error.code if ended.error else "job_failed",
                          f"job {job_id} failed: {why} (GET /jobs/{job_id})", job_id=job_id)
        if not isinstance(ended.result, IngestReport):
            return _error(409, "job_cancelled", f"job {job_id} was cancelled before it finished; what it had "
                                                f"finished is ingested (GET /jobs/{job_id})")
        return JSONResponse(ended.result.model_dump(mode="json"), headers=where)

    @app.get("/documents", dependencies=guarded)
    def list_documents(who: Reader, collection: Annotated[str | None, Query(max_length=200)] = None
                       ) -> list[Document]:
        return svc.list_documents(collection, who=who)

    @app.get("/documents/{ref}", dependencies=guarded)
    def get_document(who: Reader, ref: str) -> Document:
        return svc.get_document(ref, who=who)

    @app.delete("/documents/{ref}", dependencies=guarded)
    def delete_document(who: Writer, ref: str) -> Document:
        return svc.delete_document(ref, who=who)

    @app.get("/documents/{ref}/pages/{page}.png", dependencies=guarded,
             responses={200: {"content": {"image/png": {}}}}, response_class=Response)
    def page_image(who: Reader, ref: str, page: int, width: Annotated[int, Query(ge=50, le=4000)] = 1000,
                   boxes: Annotated[str | None, Query(description="x0,y0,x1,y1[:style];… in page fractions")] = None,
                   crop: Annotated[str | None, Query(max_length=200, description="x0,y0,x1,y1: zoom into this "
                                                                                  "part of the page")] = None,
                   ) -> Response:
        zoom = parse_boxes(crop)[0][0] if crop else None
        return Response(svc.page_png(ref, page, width=width, boxes=parse_boxes(boxes), crop=zoom, who=who),
                        media_type="image/png")

    @app.post("/search", dependencies=guarded)
    def search(who: Reader, req: SearchRequest) -> list[Hit]:
        return svc.search(req.question, k=req.k, collection=req.collection, doc_ids=req.doc_ids, who=who)

    @app.post("/search/documents", dependencies=guarded)
    def search_documents(who: Reader, req: DocumentSearchRequest) -> list[dict[str, Any]]:
        """The documents most about the question, best first: ``doc_id``, ``name``, ``score`` (its best page's) and
        ``pages`` (its matching pages, best first)."""
        return svc.search_documents(req.question, k=req.k, collection=req.collection, who=who)

    @app.post("/ask", dependencies=guarded)
    def ask(who: Reader, req: AskRequest) -> Answer:
        return svc.ask(req.question, k=req.k, collection=req.collection, doc_ids=req.doc_ids, who=who)

    @app.post("/extract", dependencies=guarded)
    def extract(who: Writer, req: ExtractRequest) -> Extraction:
        return svc.extract(req.json_schema, req.doc_ids, max_pages=req.max_pages, save=req.save, who=who)

    @app.post("/extract/jobs", dependencies=guarded, status_code=202, response_model=None,
              responses={202: {"model": Job, "description": "queued; poll the Location (/jobs/{id})"}})
    def extract_job(who: Writer, req: ExtractJobRequest) -> JSONResponse:
        """Extract the schema from each document separately (all documents when ``doc_ids`` is left out), as a
        job: 202 with the job and ``Location: /jobs/{id}``; its result is one BatchResult per document. Documents
        already extracted with this schema, model and prompt are not extracted again."""
        docs = svc.batch_targets(req.json_schema, req.doc_ids, who=who)
        fair_share(who)
        job = runner.submit_extract(req.json_schema, docs, max_pages=req.max_pages,
                                    key_name=None if who is LOCAL_ADMIN else who.name)
        svc.audit(who, "extract job", "ok", detail=f"job {job.job_id}: {len(docs)} documents")
        return JSONResponse(job.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/{job.job_id}"})

    @app.get("/extractions/{ex_id}", dependencies=guarded)
    def get_extraction(who: Writer, ex_id: str) -> StoredExtraction:
        """A stored extraction (``POST /extract``, or a batch job's ``extraction_id``) with its hand corrections."""
        ex, corrections = svc.get_extraction(ex_id, who=who)
        return StoredExtraction(extraction=ex, corrections=corrections)

    @app.post("/extractions/{ex_id}/corrections", dependencies=guarded)
    def correct_extraction(who: Writer, ex_id: str, req: CorrectionRequest) -> StoredExtraction:
        """Keep a hand correction of one field; the model's value stays beside it."""
        svc.correct_extraction(ex_id, req.field, req.value, who=who)
        ex, corrections = svc.get_extraction(ex_id, who=who)
        return StoredExtraction(extraction=ex, corrections=corrections)

    @app.get("/jobs", dependencies=guarded)
    def list_jobs(who: Writer, state: JobState | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50
                  ) -> list[Job]:
        """The newest jobs first (uploads and batch extractions), only those in ``state`` when given."""
        return svc.list_jobs(state, limit, who=who)

    @app.get("/jobs/{job_id}", dependencies=guarded)
    def get_job(who: Writer, job_id: str) -> Job:
        """A job's state (queued, running, done, failed, cancelled), progress, per-file errors and, once done, its
        result (the IngestReport, or one BatchResult per document)."""
        return svc.get_job(job_id, who=who)

    @app.delete("/jobs/{job_id}", dependencies=guarded, responses={409: {"description": "the job has ended"}})
    def cancel_job(who: Writer, job_id: str) -> Job:
        """Cancel a job: a queued one never runs; a running one stops at its next file or page batch (files it
        finished stay ingested; a half-read file is removed). Answers the job (``cancel_requested``)."""
        return svc.cancel_job(job_id, who=who)

    @app.post("/locate", dependencies=guarded)
    def locate(who: Reader, req: LocateRequest) -> LocateResult:
        return svc.locate(req.doc_id, req.page, req.value, req.near, who=who)

    @app.get("/me", dependencies=guarded)
    def me(who: Reader) -> Principal:
        """Who the key sent is: its name, role and collections (null: every collection)."""
        return who

    @app.post("/keys", dependencies=guarded, status_code=201)
    def create_key(who: Admin, req: KeyRequest) -> NewKeyOut:
        """A new API key, answered once as ``key`` (only its SHA-256 is kept)."""
        made = svc.create_key(req.name, req.role, req.collections, req.expires, who=who)
        gate.forget()
        return NewKeyOut(key=made.key, **made.info.model_dump())

    @app.get("/keys", dependencies=guarded)
    def list_keys(who: Admin) -> list[KeyInfo]:
        """Every key (never the key itself): name, role, collections, created, expires, revoked, last 4 chars."""
        return svc.list_keys()

    @app.delete("/keys/{name}", dependencies=guarded)
    def revoke_key(who: Admin, name: str) -> KeyInfo:
        """Revoke a key: it stops working at once."""
        info = svc.revoke_key(name, who=who)
        gate.forget()
        return info

    @app.get("/audit", dependencies=guarded)
    def audit(who: Admin, since: datetime | None = None, key: Annotated[str | None, Query(max_length=100)] = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[AuditEvent]:
        """The audit log, newest first: every write and every denied request (read-only: no route changes it)."""
        return svc.audit_events(since=since, key_name=key, limit=limit)

    @app.on_event("shutdown")
    def _close() -> None:
        runner.stop()
        svc.close()

    return app


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
