"""A shell's way to a data dir that a running PageLens server owns: the Service's operations, over its HTTP API.

The embedded stores belong to one process. When ``pagelens serve`` holds a data dir it records where it listens
(``store.owner``), and the other shells on that data dir (the CLI, the UI) talk to it through this client instead
of being refused. Each method has the name, arguments and return type of the Service method it stands for, and
raises what the server's Service raised (the error's code travels in the body: ``schemas.errors.error_from``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from schemas.access import AuditEvent, KeyInfo, NewKey, Principal
from schemas.answers import Answer, Extraction, LocateResult
from schemas.calibration import CalibrationProfile
from schemas.conversations import Conversation, ConversationInfo, Turn
from schemas.documents import Document
from schemas.errors import InputError, ModelUnavailable, PageLensError, StoreError, error_from
from schemas.jobs import FINISHED_STATES, Job, JobState
from schemas.results import BatchResult, FileOutcome, Hit, IngestReport
from schemas.settings import Settings
from store.owner import ServerRecord

POLL_S = 0.25  # how often a job's progress is read while a shell waits for it
UPLOAD_BATCH_FILES = 64  # files per upload job: one request body stays well under the server's limit
CONNECT_WAIT_S = 10.0  # a server that has just recorded itself may not listen yet


class RemoteService:
    """The operations of ``app.service.Service`` the shells use, run by the server at ``record.url``."""

    remote = True

    def __init__(self, settings: Settings, record: ServerRecord, *, timeout_s: float = 600.0) -> None:
        self.settings = settings
        self.url = record.url
        self.record = record
        self._http = httpx.Client(base_url=record.url, headers={"X-API-Key": record.token}, timeout=timeout_s,
                                  trust_env=False)  # loopback: never through a proxy

    def auth_required(self) -> bool:
        return self._call("GET", "/health").get("auth") == "keys"

    def sign_in(self, key: str) -> Principal | None:
        """Who ``key`` is on the server (None when it is not a valid key there)."""
        r = self._http.get("/me", headers={"X-API-Key": key})
        return Principal.model_validate(r.json()) if r.status_code == 200 else None

    def as_key(self, key: str) -> RemoteService:
        """This client acting as ``key`` instead of the data dir's local token (the UI's signed-in user)."""
        return RemoteService(self.settings, ServerRecord(url=self.url, token=key, pid=self.record.pid))

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request, retried while a server that has just recorded itself does not listen yet. Raises the
        PageLensError the server answered with, or StoreError when it cannot be reached."""
        deadline = time.monotonic() + CONNECT_WAIT_S
        while True:
            try:
                r = self._http.request(method, path, **kw)
                break
            except httpx.ConnectError as e:
                if time.monotonic() > deadline:
                    raise StoreError(f"the PageLens server at {self.url} that owns {self.settings.data_dir} does "
                                     f"not answer ({e}); check it, or stop it to use the data dir here") from e
                time.sleep(0.2)
            except httpx.HTTPError as e:
                raise StoreError(f"the PageLens server at {self.url} failed to answer ({e})") from e
        if r.status_code >= 400:
            try:
                body = r.json()["error"]
                raise error_from(str(body["code"]), str(body["message"]))
            except (ValueError, KeyError, TypeError):
                raise StoreError(f"the PageLens server at {self.url} answered {r.status_code}: "
                                 f"{r.text[:300]}") from None
        return r

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        """One request; the answer's JSON (see ``_send``)."""
        r = self._send(method, path, **kw)
        return r.json() if r.content else None

    def close(self) -> None:
        self._http.close()

    # -- documents --------------------------------------------------------------------------------
    def list_documents(self, collection: str | None = None) -> list[Document]:
        params = {"collection": collection} if collection is not None else {}
        return [Document.model_validate(d) for d in self._call("GET", "/documents", params=params)]

    def get_document(self, ref: str) -> Document:
        return Document.model_validate(self._call("GET", f"/documents/{_quote(ref)}"))

    def delete_document(self, ref: str) -> Document:
        return Document.model_validate(self._call("DELETE", f"/documents/{_quote(ref)}"))

    def resolve_docs(self, refs: list[str]) -> list[str]:
        return list(dict.fromkeys(self.get_document(r).doc_id for r in refs))

    def page_png(self, ref: str, page: int, *, width: int = 1000, boxes: list[tuple[Any, str]] | None = None,
                 crop: Any = None) -> bytes:
        params: dict[str, Any] = {"width": width}
        if boxes:
            params["boxes"] = ";".join(f"{','.join(f'{x:.6f}' for x in b.as_list())}:{style}" for b, style in boxes)
        if crop is not None:
            params["crop"] = ",".join(f"{x:.6f}" for x in crop.as_list())
        r = self._send("GET", f"/documents/{_quote(ref)}/pages/{page}.png", params=params)
        return r.content

    # -- queries ----------------------------------------------------------------------------------
    def search(self, question: str, *, k: int = 5, collection: str | None = None,
               doc_ids: list[str] | None = None) -> list[Hit]:
        body = {"question": question, "k": k, "collection": collection, "doc_ids": doc_ids}
        return [Hit.model_validate(h) for h in self._call("POST", "/search", json=body)]

    def search_documents(self, question: str, *, k: int = 5, collection: str | None = None) -> list[dict[str, Any]]:
        body = {"question": question, "k": k, "collection": collection}
        return list(self._call("POST", "/search/documents", json=body))

    def ask(self, question: str, *, k: int = 3, collection: str | None = None,
            doc_ids: list[str] | None = None) -> Answer:
        body = {"question": question, "k": k, "collection": collection, "doc_ids": doc_ids}
        return Answer.model_validate(self._call("POST", "/ask", json=body))

    def locate(self, ref: str, page: int, value: object, near: list[float] | None = None) -> LocateResult:
        body = {"doc_id": ref, "page": page, "value": value, "near": near}
        return LocateResult.model_validate(self._call("POST", "/locate", json=body))

    # -- conversations ----------------------------------------------------------------------------
    def start_conversation(self, *, title: str | None = None, collection: str | None = None) -> ConversationInfo:
        body = {"title": title, "collection": collection}
        return ConversationInfo.model_validate(self._call("POST", "/conversations", json=body))

    def converse(self, conversation_id: str, question: str, *, k: int = 3) -> Turn:
        body = {"question": question, "k": k}
        return Turn.model_validate(self._call("POST", f"/conversations/{_quote(conversation_id)}/messages",
                                              json=body))

    def get_conversation(self, conversation_id: str) -> Conversation:
        return Conversation.model_validate(self._call("GET", f"/conversations/{_quote(conversation_id)}"))

    def list_conversations(self, limit: int = 50) -> list[ConversationInfo]:
        return [ConversationInfo.model_validate(c)
                for c in self._call("GET", "/conversations", params={"limit": limit})]

    def delete_conversation(self, conversation_id: str) -> ConversationInfo:
        return ConversationInfo.model_validate(self._call("DELETE", f"/conversations/{_quote(conversation_id)}"))

    # -- calibration profiles ----------------------------------------------------------------------
    def save_calibration(self, profile: CalibrationProfile) -> CalibrationProfile:
        return CalibrationProfile.model_validate(self._call("POST", "/calibration/profiles",
                                                            json=profile.model_dump(mode="json")))

    def calibrations(self, schema_hash: str | None = None) -> list[CalibrationProfile]:
        params = {"schema_hash": schema_hash} if schema_hash else None
        return [CalibrationProfile.model_validate(p) for p in self._call("GET", "/calibration/profiles",
                                                                         params=params)]

    def delete_calibration(self, ref: str) -> CalibrationProfile:
        return CalibrationProfile.model_validate(self._call("DELETE", f"/calibration/profiles/{_quote(ref)}"))

    def corrected_extractions(self, schema_hash: str) -> list[tuple[Extraction, dict[str, Any]]]:
        rows = self._call("GET", "/calibration/corrections", params={"schema_hash": schema_hash})
        return [(Extraction.model_validate(r["extraction"]), dict(r["corrections"])) for r in rows]

    def vlm(self) -> None:
        """Fail fast, as Service.vlm does, when the server has no VLM configured."""
        health = self._call("GET", "/health")
        if health.get("vlm") == "none":
            raise ModelUnavailable(f"the PageLens server at {self.url} has no VLM configured; start it with one "
                                   "(PAGELENS_VLM_URL, or PAGELENS_VLM__BACKEND=transformers|words)")

    def extract(self, schema: str | dict[str, Any] | type, doc_refs: list[str], *, max_pages: int = 8,
                save: bool = True) -> Extraction:
        body = {"schema": _json_schema(schema), "doc_ids": doc_refs, "max_pages": max_pages, "save": save}
        return Extraction.model_validate(self._call("POST", "/extract", json=body))

    def extract_each(self, schema: str | dict[str, Any] | type, targets: list[tuple[str, str]], *, max_pages: int,
                     concurrency: int | None = None,
                     on_result: Callable[[BatchResult], None] | None = None) -> list[BatchResult]:
        """One extraction per document, as the server's extract job runs them (its concurrency setting)."""
        body = {"schema": _json_schema(schema), "doc_ids": [d for d, _ in targets], "max_pages": max_pages}
        job = Job.model_validate(self._call("POST", "/extract/jobs", json=body))
        seen = 0

        def report(j: Job) -> None:
            nonlocal seen
            results = j.result if isinstance(j.result, list) else []
            for r in results[seen:]:
                if on_result is not None:
                    on_result(r)
            seen = max(seen, len(results))

        ended = self._wait(job.job_id, report)
        results = ended.result if isinstance(ended.result, list) else []
        if ended.state != "done":
            raise _job_failed(ended)
        return list(results)

    # -- ingest -----------------------------------------------------------------------------------
    def ingest(self, paths: list[Path], *, collection: str | None = None, password: str | None = None,
               on_progress: Callable[[Any], None] | None = None, workers: int | None = None,
               ray: str | None = None, **_: Any) -> IngestReport:
        """Upload the files to the server and wait for its ingest jobs (UPLOAD_BATCH_FILES files each), reporting
        their progress. Raises InputError for options the server decides itself (``workers``, ``ray``)."""
        from ingest.discover import discover
        from ingest.pipeline import Progress

        if ray is not None:  # ``workers`` is a tuning knob: the server's own setting decides
            raise InputError(f"--ray is the server's to choose: the PageLens server at {self.url} ingests for "
                             "this data dir; stop it to ingest here on Ray")
        files = discover(paths)
        started = time.monotonic()
        outcomes: list[FileOutcome] = []
        done_before = pages_before = 0
        for start in range(0, len(files), UPLOAD_BATCH_FILES):
            batch = files[start:start + UPLOAD_BATCH_FILES]
            job = self._upload(batch, collection, password)

            def progress(j: Job, _before: tuple[int, int] = (done_before, pages_before)) -> None:
                if on_progress is not None:
                    p = j.progress
                    on_progress(Progress(files_total=len(files), files_done=_before[0] + p.files_done,
                                         pages_done=_before[1] + p.pages_done,
                                         pages_total=_before[1] + p.pages_total, current=p.current or "",
                                         work_done=None if p.work_done is None else _before[0] + p.work_done))

            ended = self._wait(job.job_id, progress)
            if not isinstance(ended.result, IngestReport):
                raise _job_failed(ended)
            outcomes += ended.result.files
            done_before += len(batch)
            pages_before += ended.result.pages
        return IngestReport(files=outcomes, seconds=time.monotonic() - started)

    def ingest_files(self, files: list[tuple[str, bytes]], *, collection: str | None = None,
                     password: str | None = None, on_progress: Callable[[Any], None] | None = None) -> IngestReport:
        """Uploaded files given as (name, bytes), ingested by the server under their names (one job)."""
        from ingest.pipeline import Progress

        parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
        job = self._post_upload(parts, collection, password)

        def progress(j: Job) -> None:
            if on_progress is not None:
                p = j.progress
                on_progress(Progress(files_total=p.files_total, files_done=p.files_done, pages_done=p.pages_done,
                                     pages_total=p.pages_total, current=p.current or "", work_done=p.work_done))

        ended = self._wait(job.job_id, progress)
        if not isinstance(ended.result, IngestReport):
            raise _job_failed(ended)
        return ended.result

    def _upload(self, files: list[Path], collection: str | None, password: str | None) -> Job:
        handles = [f.open("rb") for f in files]
        try:
            parts = [("files", (f.name, h, "application/octet-stream")) for f, h in zip(files, handles, strict=True)]
            return self._post_upload(parts, collection, password)
        finally:
            for h in handles:
                h.close()

    def _post_upload(self, parts: list[Any], collection: str | None, password: str | None) -> Job:
        form = {k: v for k, v in (("collection", collection), ("password", password)) if v is not None}
        return Job.model_validate(self._call("POST", "/documents", files=parts, data=form))

    def get_extraction(self, ex_id: str) -> tuple[Extraction, dict[str, Any]]:
        body = self._call("GET", f"/extractions/{_quote(ex_id)}")
        return Extraction.model_validate(body["extraction"]), dict(body["corrections"])

    def correct_extraction(self, ex_id: str, path: str, value: Any) -> None:
        self._call("POST", f"/extractions/{_quote(ex_id)}/corrections", json={"field": path, "value": value})

    def extraction_table(self, ex_id: str) -> list[dict[str, Any]]:
        from app.service import extraction_rows

        return extraction_rows(*self.get_extraction(ex_id))

    def export_extraction(self, ex_id: str, fmt: str) -> str:
        from app.service import export_extraction

        return export_extraction(*self.get_extraction(ex_id), fmt)

    def vlm_name(self) -> str:
        return str(self._call("GET", "/health").get("vlm", "none"))

    # -- jobs -------------------------------------------------------------------------------------
    def list_jobs(self, state: JobState | None = None, limit: int = 50) -> list[Job]:
        params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
        return [Job.model_validate(j) for j in self._call("GET", "/jobs", params=params)]

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self._call("GET", f"/jobs/{_quote(job_id)}"))

    def cancel_job(self, job_id: str) -> Job:
        return Job.model_validate(self._call("DELETE", f"/jobs/{_quote(job_id)}"))

    def _wait(self, job_id: str, on_update: Callable[[Job], None]) -> Job:
        """Poll a job until it ends, calling ``on_update`` with each reading. Ctrl-C cancels the job."""
        try:
            while True:
                job = self.get_job(job_id)
                on_update(job)
                if job.state in FINISHED_STATES:
                    return job
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            self.cancel_job(job_id)
            raise

    # -- keys and the audit log --------------------------------------------------------------------
    def create_key(self, name: str, role: str, collections: list[str] | None = None,
                   expires: str | None = None) -> NewKey:
        body = self._call("POST", "/keys", json={"name": name, "role": role, "collections": collections,
                                                 "expires": expires})
        key = body.pop("key")
        return NewKey(key=key, info=KeyInfo.model_validate(body))

    def list_keys(self) -> list[KeyInfo]:
        return [KeyInfo.model_validate(k) for k in self._call("GET", "/keys")]

    def revoke_key(self, name: str) -> KeyInfo:
        return KeyInfo.model_validate(self._call("DELETE", f"/keys/{_quote(name)}"))

    def audit_events(self, *, since: Any = None, key_name: str | None = None, limit: int = 1000) -> list[AuditEvent]:
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since.isoformat()
        if key_name is not None:
            params["key"] = key_name
        return [AuditEvent.model_validate(e) for e in self._call("GET", "/audit", params=params)]

    def health(self, *, counts: bool = True) -> dict[str, Any]:
        return dict(self._call("GET", "/health"))


def open_service(settings: Settings | None = None, *, create_data_dir: bool = True) -> Any:
    """The way to this data dir for a shell: through the PageLens server that owns it when one is running (a
    RemoteService), else a Service in this process. Raises what ``Service()`` raises."""
    from app.service import Service, check_data_dir
    from schemas.settings import load_settings
    from store.owner import running_server

    s = settings or load_settings()
    if s.qdrant_url is None:  # shared stores (a Qdrant server) are opened by every process itself
        check_data_dir(s, create=create_data_dir)
        record = running_server(s.data_dir)
        if record is not None:
            return RemoteService(s, record)
    return Service(s, create_data_dir=create_data_dir)


def _quote(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


def _json_schema(schema: str | dict[str, Any] | type) -> dict[str, Any]:
    """The JSON Schema to send: a .json file read here (the server cannot see the client's files), a Pydantic
    model's schema, or the dict given."""
    from pydantic import BaseModel

    from vlm.user_schema import read_schema

    given = read_schema(schema)
    if isinstance(given, type) and issubclass(given, BaseModel):
        return given.model_json_schema()
    return json.loads(json.dumps(given))


def _job_failed(job: Job) -> PageLensError:
    if job.state == "cancelled":
        return PageLensError(f"job {job.job_id} was cancelled on the server; what it finished is kept "
                             f"(pagelens jobs)", code="job_cancelled")
    if job.error is not None:
        return error_from(job.error.code, job.error.message)
    return PageLensError(f"job {job.job_id} ended {job.state}", code="job_failed")
