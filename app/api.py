"""The HTTP API (FastAPI): upload/list/delete documents, search, ask, extract, locate, page images with boxes,
health. OpenAPI at /docs. API-key auth (X-API-Key) when PAGELENS_API_KEY is set. Every error is JSON:
``{"error": {"code", "message"}}`` with a 4xx/5xx status chosen by who made the mistake."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.service import Service
from schemas.answers import Answer, Extraction, LocateResult
from schemas.coords import BBox
from schemas.documents import Document
from schemas.errors import (
    ConfigError,
    InputError,
    ModelBehaviorError,
    ModelHTTPError,
    NotFound,
    PageLensError,
    PasswordRequired,
    TooLarge,
    UnsupportedType,
)
from schemas.results import Hit, IngestReport
from schemas.settings import Settings

UPLOAD_TYPES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=100)
    collection: str | None = None
    doc_ids: list[str] | None = None


class AskRequest(SearchRequest):
    k: int = Field(3, ge=1, le=20)


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the fields to extract")
    doc_ids: list[str] = Field(min_length=1)
    max_pages: int = Field(8, ge=1, le=64)


class LocateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_id: str
    page: int = Field(ge=1)
    value: str | int | float
    near: list[float] | None = Field(None, min_length=4, max_length=4)


def _status(e: PageLensError) -> int:
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, TooLarge):
        return 413
    if isinstance(e, UnsupportedType):
        return 415
    if isinstance(e, PasswordRequired):
        return 422
    if isinstance(e, InputError):
        return 400
    if isinstance(e, ModelBehaviorError | ModelHTTPError):
        return 502
    if isinstance(e, ConfigError):
        return 503
    return 500


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, **extra}})


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    svc = service or Service(settings)
    s = svc.settings
    app = FastAPI(title="PageLens", version="0.1.0",
                  description="Grounded search, answers and structured extraction over PDFs and page images.")
    app.state.service = svc

    def auth(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if s.api_key and x_api_key != s.api_key:
            raise PageLensError("missing or wrong API key: send it in the X-API-Key header", code="unauthorized")

    @app.exception_handler(PageLensError)
    def _pagelens_error(_r: Request, e: PageLensError) -> JSONResponse:
        if e.code == "unauthorized":
            return _error(401, e.code, e.message)
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
        return _error(500, "internal_error", f"an unexpected error occurred ({e.__class__.__name__}); see the "
                                             "server log")

    guarded = [Depends(auth)]

    @app.get("/health")
    def health() -> dict[str, Any]:
        from vlm.backend import backend_name

        return {"status": "ok", "documents": len(svc.list_documents()), "vlm": backend_name(s),
                "vector_store": "qdrant-server" if s.qdrant_url else "qdrant-edge"}

    @app.post("/documents", dependencies=guarded)
    def upload(files: Annotated[list[UploadFile], File(description="PDF/PNG/JPEG/TIFF files")],
               collection: Annotated[str | None, Form()] = None,
               password: Annotated[str | None, Form()] = None) -> IngestReport:
        limit = int(s.max_upload_mb * 2**20)
        tmp = Path(tempfile.mkdtemp(prefix="pagelens-upload-"))
        try:
            paths = []
            for i, f in enumerate(files):
                name = Path(f.filename or f"upload-{i}").name
                if Path(name).suffix.lower() not in UPLOAD_TYPES:
                    raise UnsupportedType(f"{name}: only {', '.join(sorted(UPLOAD_TYPES))} files are accepted")
                dest = tmp / f"{i}-{name}"
                with dest.open("wb") as out:
                    size = 0
                    while chunk := f.file.read(1 << 20):
                        size += len(chunk)
                        if size > limit:
                            raise TooLarge(f"{name} is over the {s.max_upload_mb:g} MB upload limit")
                        out.write(chunk)
                paths.append(dest)
            return svc.ingest(paths, collection=collection, password=password)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

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
                   ) -> Response:
        drawn: list[tuple[BBox, str]] = []
        for part in (boxes or "").split(";"):
            if part.strip():
                coords, _, style = part.partition(":")
                try:
                    drawn.append((BBox.of([float(x) for x in coords.split(",")]), style or "match"))
                except ValueError as e:
                    raise InputError(f"bad box '{part}': give x0,y0,x1,y1 fractions with x0<x1, y0<y1") from e
        return Response(svc.page_png(ref, page, width=width, boxes=drawn), media_type="image/png")

    @app.post("/search", dependencies=guarded)
    def search(req: SearchRequest) -> list[Hit]:
        return svc.search(req.question, k=req.k, collection=req.collection, doc_ids=req.doc_ids)

    @app.post("/ask", dependencies=guarded)
    def ask(req: AskRequest) -> Answer:
        return svc.ask(req.question, k=req.k, collection=req.collection, doc_ids=req.doc_ids)

    @app.post("/extract", dependencies=guarded)
    def extract(req: ExtractRequest) -> Extraction:
        return svc.extract(req.json_schema, req.doc_ids, max_pages=req.max_pages)

    @app.post("/locate", dependencies=guarded)
    def locate(req: LocateRequest) -> LocateResult:
        return svc.locate(req.doc_id, req.page, req.value, req.near)

    @app.on_event("shutdown")
    def _close() -> None:
        svc.close()

    return app
