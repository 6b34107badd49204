"""Routes: documents — upload (as a job), list, get, delete, page images with boxes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from app.api.deps import GUARDED, Reader, Runner, Svc, Writer, fair_share, writable
from app.api.guard import error
from app.jobs import new_job_id, upload_paths
from schemas.access import LOCAL_ADMIN
from schemas.coords import BBox
from schemas.documents import Document
from schemas.errors import InputError, TooLarge, UnsupportedType
from schemas.jobs import Job
from schemas.results import IngestReport
from store.pages import MAX_BOXES
from store.space import check_free, disk_full_from

router = APIRouter(tags=["documents"])
UPLOAD_TYPES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
MAX_NAME_BYTES = 255  # a file name's length in UTF-8 bytes (what file systems allow)


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


@router.post("/documents", dependencies=GUARDED, status_code=202, response_model=None,
             responses={202: {"model": Job, "description": "queued as a job; poll the Location (/jobs/{id})"},
             200: {"model": IngestReport, "description": "with wait=true: the ingest report"}})
def upload(svc: Svc, runner: Runner, who: Writer,
           files: Annotated[list[UploadFile], File(description="PDF/PNG/JPEG/TIFF files")],
           collection: Annotated[str | None, Form()] = None,
           password: Annotated[str | None, Form()] = None,
           wait: Annotated[bool, Query(description="answer when the files are ingested, with the report "
                                                   "(200), instead of at once with the job (202)")] = False,
           ) -> JSONResponse:
    """Upload files to ingest. They are saved under the data dir and ingested by a job: the answer is 202 with
    the job (``job_id``, ``state``) and ``Location: /jobs/{id}`` to poll. ``?wait=true`` waits for the job and
    answers 200 with its IngestReport, as this endpoint did before jobs (the job is still listed)."""
    names = [_client_name(f.filename, i) for i, f in enumerate(files)]
    s = svc.settings
    collection = writable(svc, who, collection)
    fair_share(svc, who)
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
        return error(500, ended.error.code if ended.error else "job_failed",
                      f"job {job_id} failed: {why} (GET /jobs/{job_id})", job_id=job_id)
    if not isinstance(ended.result, IngestReport):
        return error(409, "job_cancelled", f"job {job_id} was cancelled before it finished; what it had "
                                            f"finished is ingested (GET /jobs/{job_id})")
    return JSONResponse(ended.result.model_dump(mode="json"), headers=where)


@router.get("/documents", dependencies=GUARDED)
def list_documents(svc: Svc, who: Reader, collection: Annotated[str | None, Query(max_length=200)] = None
                   ) -> list[Document]:
    return svc.list_documents(collection, who=who)


@router.get("/documents/{ref}", dependencies=GUARDED)
def get_document(svc: Svc, who: Reader, ref: str) -> Document:
    return svc.get_document(ref, who=who)


@router.delete("/documents/{ref}", dependencies=GUARDED)
def delete_document(svc: Svc, who: Writer, ref: str) -> Document:
    return svc.delete_document(ref, who=who)


@router.get("/documents/{ref}/pages/{page}.png", dependencies=GUARDED,
            responses={200: {"content": {"image/png": {}}}}, response_class=Response)
def page_image(svc: Svc, who: Reader, ref: str, page: int, width: Annotated[int, Query(ge=50, le=4000)] = 1000,
               boxes: Annotated[str | None, Query(description="x0,y0,x1,y1[:style];… in page fractions")] = None,
               crop: Annotated[str | None, Query(max_length=200, description="x0,y0,x1,y1: zoom into this "
                                                                              "part of the page")] = None,
               ) -> Response:
    zoom = parse_boxes(crop)[0][0] if crop else None
    return Response(svc.page_png(ref, page, width=width, boxes=parse_boxes(boxes), crop=zoom, who=who),
                    media_type="image/png")

