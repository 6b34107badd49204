"""The HTTP API (FastAPI): upload/list/delete documents, search, ask, extract, locate, page images with boxes,
health; uploads and batch extractions run as jobs (``/jobs``, app/jobs.py). OpenAPI at /docs. API-key auth
(X-API-Key) when PAGELENS_API_KEY is set, checked with the body size before any body is read (``RequestGuard``).
Every error is JSON: ``{"error": {"code", "message"}}`` with a 4xx/5xx status chosen by who made the mistake."""

from __future__ import annotations

import hmac
import logging
import shutil
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

from app.jobs import JobRunner, new_job_id, upload_paths
from app.service import Service
from schemas.answers import Answer, Extraction, LocateResult
from schemas.coords import BBox
from schemas.documents import Document
from schemas.errors import (
    ConfigError,
    Conflict,
    InputError,
    ModelBehaviorError,
    ModelHTTPError,
    NotFound,
    PageLensError,
    PasswordRequired,
    RenderFailed,
    StoreError,
    TooLarge,
    UnsupportedType,
    WrongPassword,
)
from schemas.jobs import Job, JobState
from schemas.results import Hit, IngestReport
from schemas.settings import Settings
from store.pages import MAX_BOXES

log = logging.getLogger(__name__)

UPLOAD_TYPES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
MAX_NAME_BYTES = 255  # a file name's length in UTF-8 bytes (what file systems allow)
UPLOAD_FILES_FACTOR = 2  # one request body may carry up to twice the per-file upload limit (several files)
BODY_OVERHEAD = 2**20  # bytes a body may have beyond the files: form boundaries and fields, JSON requests
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer")]
# JSON and PNG responses load nothing and are framed by nothing; HTML (/docs) keeps its CDN scripts.
STRICT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=100)
    collection: str | None = None
    doc_ids: list[str] | None = None


class DocumentSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=100)
    collection: str | None = None


class AskRequest(SearchRequest):
    k: int = Field(3, ge=1, le=20)


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the fields to extract")
    doc_ids: list[str] = Field(min_length=1)
    max_pages: int = Field(8, ge=1, le=64)
    save: bool = Field(True, description="keep the extraction in the catalog (false: an evaluation run)")


class ExtractJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the fields to extract")
    doc_ids: list[str] | None = Field(None, min_length=1, description="the documents (ids, id prefixes, names); "
                                      "leave out for every document")
    max_pages: int = Field(8, ge=1, le=64)


class StoredExtraction(BaseModel):
    extraction: Extraction
    corrections: dict[str, Any] = Field(description="field path -> the value a person set by hand")


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(min_length=1, max_length=1000, description="the field's path, as in the extraction")
    value: str | int | float | bool | None


class LocateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_id: str
    page: int = Field(ge=1)
    value: str | int | float
    near: list[float] | None = Field(None, min_length=4, max_length=4)


def _status(e: PageLensError) -> int:
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, Conflict):
        return 409
    if isinstance(e, TooLarge):
        return 413
    if isinstance(e, UnsupportedType):
        return 415
    if isinstance(e, PasswordRequired | WrongPassword | RenderFailed):
        return 422
    if isinstance(e, InputError):
        return 400
    if isinstance(e, ModelBehaviorError | ModelHTTPError):
        return 502
    if isinstance(e, ConfigError | StoreError):
        return 503
    return 500


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, **extra}})


def _internal_error(e: Exception) -> JSONResponse:
    return _error(500, "internal_error", f"an unexpected error occurred ({e.__class__.__name__}); see the server log")


def key_ok(expected: str | None, given: str | None, local_token: str | None = None) -> bool:
    """Whether ``given`` is the API key (always true when none is configured) or the token this server wrote for
    the shells of its data dir (``store.owner``); compared in constant time."""
    if not expected:
        return True
    if given is None:
        return False
    ok = hmac.compare_digest(given.encode(), expected.encode())
    return ok | (local_token is not None and hmac.compare_digest(given.encode(), local_token.encode()))


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

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body: int, local_token: str | None = None) -> None:
        self.app = app
        self.api_key = api_key
        self.local_token = local_token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        if scope["path"] in PUBLIC_PATHS:
            await self._run(scope, receive, send)
            return
        rejection = self._early_rejection(Headers(scope=scope))
        if rejection is not None:
            await rejection(scope, receive, send)
            return
        await self._run_limited(scope, receive, send)

    def _early_rejection(self, headers: Headers) -> JSONResponse | None:
        if not key_ok(self.api_key, headers.get("x-api-key"), self.local_token):
            return _error(401, "unauthorized", "missing or wrong API key: send it in the X-API-Key header")
        length = headers.get("content-length")
        if length is not None and not length.strip().isdigit():
            return _error(400, "invalid_request", f"the Content-Length header '{length[:40]}' is not a number")
        if length is not None and int(length) > self.max_body:
            return self._too_large()
        return None

    def _too_large(self) -> JSONResponse:
        return _error(413, "too_large", f"the request body is over {self.max_body / 2**20:.0f} MB; send fewer or "
                                        "smaller files in one request")

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
        seen, over = 0, False

        async def limited_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                over = seen > self.max_body
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
            await self._too_large()(scope, receive, send)


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
    with path.open("wb") as out:
        while chunk := f.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"{name} is over the {limit_mb:g} MB upload limit")
            out.write(chunk)
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
    app = FastAPI(title="PageLens", version="0.1.0",
                  description="Grounded search, answers and structured extraction over PDFs and page images.")
    app.state.service = svc
    app.state.jobs = runner
    app.add_middleware(RequestGuard, api_key=s.api_key, max_body=body_limit(s), local_token=local_token)

    @app.exception_handler(PageLensError)
    def _pagelens_error(_r: Request, e: PageLensError) -> JSONResponse:
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
    def health(x_api_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        """Probes the catalog and the vector index: 200 ``ok``, or 503 ``degraded`` with the parts that failed.
        Document and page counts only with the API key (or when none is configured)."""
        report = svc.health(counts=key_ok(s.api_key, x_api_key, local_token))
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @app.post("/documents", dependencies=guarded, status_code=202, response_model=None,
              responses={202: {"model": Job, "description": "queued as a job; poll the Location (/jobs/{id})"},
                         200: {"model": IngestReport, "description": "with wait=true: the ingest report"}})
    def upload(files: Annotated[list[UploadFile], File(description="PDF/PNG/JPEG/TIFF files")],
               collection: Annotated[str | None, Form()] = None,
               password: Annotated[str | None, Form()] = None,
               wait: Annotated[bool, Query(description="answer when the files are ingested, with the report "
                                                       "(200), instead of at once with the job (202)")] = False,
               ) -> JSONResponse:
        """Upload files to ingest. They are saved under the data dir and ingested by a job: the answer is 202 with
        the job (``job_id``, ``state``) and ``Location: /jobs/{id}`` to poll. ``?wait=true`` waits for the job and
        answers 200 with its IngestReport, as this endpoint did before jobs (the job is still listed)."""
        names = [_client_name(f.filename, i) for i, f in enumerate(files)]
        job_id = new_job_id()
        job_dir = svc.job_dir(job_id)
        job_dir.mkdir(parents=True)
        try:  # one folder per file: each keeps the client's name
            for f, name, path in zip(files, names, upload_paths(job_dir, names), strict=True):
                _save_upload(f, name, path.parent, s.max_upload_mb)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        job = runner.submit_ingest(job_id, names, collection=collection, password=password)
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
    def list_documents(collection: str | None = None) -> list[Document]:
        return svc.list_documents(collection)

    @app.get("/documents/{ref}", dependencies=guarded)
    def get_document(ref: str) -> Document:
        return svc.get_document(ref)

    @app.delete("/documents/{ref}", dependencies=guarded)
    def delete_document(ref: str) -> Document:
        return svc.delete_document(ref)

    @app.get("/documents/{ref}/pages/{page}.png", dependencies=guarded,
             responses={200: {"content": {"image/png": {}}}}, response_class=Response)
    def page_image(ref: str, page: int, width: Annotated[int, Query(ge=50, le=4000)] = 1000,
                   boxes: Annotated[str | None, Query(description="x0,y0,x1,y1[:style];… in page fractions")] = None,
                   crop: Annotated[str | None, Query(max_length=200, description="x0,y0,x1,y1: zoom into this "
                                                                                  "part of the page")] = None,
                   ) -> Response:
        zoom = parse_boxes(crop)[0][0] if crop else None
        return Response(svc.page_png(ref, page, width=width, boxes=parse_boxes(boxes), crop=zoom),
                        media_type="image/png")

    @app.post("/search", dependencies=guarded)
    def search(req: SearchRequest) -> list[Hit]:
        return svc.search(req.question, k=req.k, collection=req.collection, doc_ids=req.doc_ids)

    @app.post("/search/documents", dependencies=guarded)
    def search_documents(req: DocumentSearchRequest) -> list[dict[str, Any]]:
        """The documents most about the question, best first: ``doc_id``, ``name``, ``score`` (its best page's) and
        ``pages`` (its matching pages, best first)."""
        return svc.search_documents(req.question, k=req.k, collection=req.collection)

    @app.post("/ask", dependencies=guarded)
    def ask(req: AskRequest) -> Answer:
        return svc.ask(req.question, k=req.k, collection=req.collection, doc_ids=req.doc_ids)

    @app.post("/extract", dependencies=guarded)
    def extract(req: ExtractRequest) -> Extraction:
        return svc.extract(req.json_schema, req.doc_ids, max_pages=req.max_pages, save=req.save)

    @app.post("/extract/jobs", dependencies=guarded, status_code=202, response_model=None,
              responses={202: {"model": Job, "description": "queued; poll the Location (/jobs/{id})"}})
    def extract_job(req: ExtractJobRequest) -> JSONResponse:
        """Extract the schema from each document separately (all documents when ``doc_ids`` is left out), as a
        job: 202 with the job and ``Location: /jobs/{id}``; its result is one BatchResult per document. Documents
        already extracted with this schema, model and prompt are not extracted again."""
        docs = svc.batch_targets(req.json_schema, req.doc_ids)
        job = runner.submit_extract(req.json_schema, docs, max_pages=req.max_pages)
        return JSONResponse(job.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/{job.job_id}"})

    @app.get("/extractions/{ex_id}", dependencies=guarded)
    def get_extraction(ex_id: str) -> StoredExtraction:
        """A stored extraction (``POST /extract``, or a batch job's ``extraction_id``) with its hand corrections."""
        ex, corrections = svc.get_extraction(ex_id)
        return StoredExtraction(extraction=ex, corrections=corrections)

    @app.post("/extractions/{ex_id}/corrections", dependencies=guarded)
    def correct_extraction(ex_id: str, req: CorrectionRequest) -> StoredExtraction:
        """Keep a hand correction of one field; the model's value stays beside it."""
        svc.correct_extraction(ex_id, req.field, req.value)
        ex, corrections = svc.get_extraction(ex_id)
        return StoredExtraction(extraction=ex, corrections=corrections)

    @app.get("/jobs", dependencies=guarded)
    def list_jobs(state: JobState | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[Job]:
        """The newest jobs first (uploads and batch extractions), only those in ``state`` when given."""
        return svc.list_jobs(state, limit)

    @app.get("/jobs/{job_id}", dependencies=guarded)
    def get_job(job_id: str) -> Job:
        """A job's state (queued, running, done, failed, cancelled), progress, per-file errors and, once done, its
        result (the IngestReport, or one BatchResult per document)."""
        return svc.get_job(job_id)

    @app.delete("/jobs/{job_id}", dependencies=guarded, responses={409: {"description": "the job has ended"}})
    def cancel_job(job_id: str) -> Job:
        """Cancel a job: a queued one never runs; a running one stops at its next file or page batch (files it
        finished stay ingested; a half-read file is removed). Answers the job (``cancel_requested``)."""
        return svc.cancel_job(job_id)

    @app.post("/locate", dependencies=guarded)
    def locate(req: LocateRequest) -> LocateResult:
        return svc.locate(req.doc_id, req.page, req.value, req.near)

    @app.on_event("shutdown")
    def _close() -> None:
        runner.stop()
        svc.close()

    return app


def local_url(host: str, port: int) -> str:
    """The URL the shells of this machine reach a server bound to ``host:port`` at (a wildcard bind: loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_data_dir(settings: Settings, *, host: str, port: int) -> None:
    """``pagelens serve``: open the stores (refused with StoreLocked when another process owns the data dir), record
    where this server listens so the data dir's other shells run through it (``store.owner``), serve until
    stopped. The record goes with the server."""
    import secrets

    import uvicorn

    svc = Service(settings)
    token = secrets.token_urlsafe(32)
    try:
        app = create_app(service=svc, local_token=token)
        if svc.owner is not None:  # embedded stores: this process owns the data dir; shared stores need no owner
            svc.owner.advertise(local_url(host, port), token)
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        svc.close()
