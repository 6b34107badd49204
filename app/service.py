"""The composition root: builds every part from one Settings, once, and hands them to the shells
(CLI, API, UI). Heavy parts (the encoder, the VLM) load on first use."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.writes import WriteGate
from schemas.access import (
    LOCAL_ADMIN,
    MAX_KEY_NAME,
    ROLES,
    AuditEvent,
    AuditOutcome,
    KeyInfo,
    NewKey,
    Principal,
    Role,
)
from schemas.answers import Answer, Candidate, Extraction, LocateResult
from schemas.calibration import CalibrationProfile
from schemas.conversations import Conversation, ConversationInfo, Turn
from schemas.coords import BBox
from schemas.documents import Document
from schemas.errors import ConfigError, InputError, NotFound, PageLensError
from schemas.jobs import Job, JobState
from schemas.names import check_name
from schemas.results import Hit, IngestReport
from schemas.settings import Settings, load_settings
from store.files import FileStore
from vlm.runtime import Models

# Heavy libraries (pymupdf and its ONNX layout models, SQLAlchemy, qdrant, torch) load inside the methods
# that need them, so `pagelens docs list` or `search` does not pay for ingestion or rendering.
if TYPE_CHECKING:
    from ingest.pipeline import Ingestor, ProgressFn
    from retrieval.search import Searcher
    from store.catalog import Catalog
    from store.on_disk import OnDisk
    from store.owner import DataDirOwner
    from store.render_pool import RenderPool
    from store.vectors import VectorIndex
    from vlm.backend import VlmBackend
    from vlm.pages import PageInput
    from vlm.siglip import SiglipEncoder

log = logging.getLogger(__name__)


def check_data_dir(settings: Settings, *, create: bool) -> None:
    """Make sure ``data_dir`` can hold the embedded stores (creating it when ``create``).

    Raises ConfigError naming PAGELENS_DATA_DIR: missing (when not ``create``), not a folder, or not writable
    (SQLite's write-ahead log and Qdrant Edge write there even to read)."""
    d = settings.data_dir
    embedded = settings.database_url is None or settings.qdrant_url is None
    if not create and not embedded:
        return
    if d.exists() and not d.is_dir():
        raise ConfigError(f"PAGELENS_DATA_DIR={d} is a file, not a folder; set PAGELENS_DATA_DIR to a folder")
    if not create and not d.exists():
        raise ConfigError(f"no PageLens data at {d.absolute()}; ingest something first or set PAGELENS_DATA_DIR",
                          code="no_data")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create PAGELENS_DATA_DIR={d} ({e.strerror or e}); set PAGELENS_DATA_DIR to a "
                          "folder you can write to") from e
    if not os.access(d, os.W_OK | os.X_OK):
        raise ConfigError(f"PAGELENS_DATA_DIR={d} is not writable (the embedded stores write there, even to "
                          "read); make it writable or set PAGELENS_DATA_DIR to another folder")


def also_found(f: Any) -> str:
    """A field's alternatives in one line: ``1300.0 (page 250, verified); …`` (empty when none)."""
    return "; ".join(f"{a.value} (page {','.join(str(b.page) for b in a.boxes) or '?'}, {a.status})"
                     for a in f.alternatives)


def extraction_rows(ex: Extraction, corrections: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per field: path, value (hand correction applied), model value, status, confidence (calibrated when a
    profile applied), the verifier's own score, pages, and what other page windows of a long document said instead
    (``also_found``; empty when they agreed)."""
    return [{"field": f.path, "value": corrections.get(f.path, f.value), "model_value": f.value,
             "corrected": f.path in corrections, "status": f.status, "confidence": round(f.confidence, 3),
             "verifier_score": round(f.raw_confidence if f.raw_confidence is not None else f.confidence, 3),
             "pages": ",".join(f"{b.page}" for b in f.boxes), "also_found": also_found(f)} for f in ex.fields]


def export_extraction(ex: Extraction, corrections: dict[str, Any], fmt: str) -> str:
    """The extraction as JSON (data with corrections applied, fields, provenance) or CSV (one row a field)."""
    import csv
    import io
    import json

    rows = extraction_rows(ex, corrections)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["field", "value"])
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    body = ex.model_dump(mode="json")
    body["corrections"] = corrections
    return json.dumps(body, indent=2)


class Service:
    """Everything PageLens does, for the shells. One per process (the embedded stores are single-process)."""

    def __init__(self, settings: Settings | None = None, *, create_data_dir: bool = True) -> None:
        """``create_data_dir=False`` for read-only commands: a missing data dir is an error, not a new empty
        store. Raises SettingsError (bad setting) or ConfigError (data dir missing, unusable or read-only)."""
        self.settings = settings or load_settings()
        check_data_dir(self.settings, create=create_data_dir)
        self.models = Models(self.settings)  # every model this process uses, each loaded once
        self._on_disk: dict[str, OnDisk | None] = {}  # the embedded stores' files as opened (``health``)
        # ingest/delete one at a time (the API serves requests concurrently); deletes get in between page batches
        self.write_lock = WriteGate()

    @cached_property
    def owner(self) -> DataDirOwner | None:
        """This process's claim on the data dir, taken before any embedded store is opened (None when the vector
        store is a server, which many processes share). Raises StoreLocked when another process holds it: then no
        file of its stores has been touched."""
        if self.settings.qdrant_url:
            return None
        from store.owner import DataDirOwner

        return DataDirOwner.claim(self.settings.data_dir)

    @cached_property
    def catalog(self) -> Catalog:
        from store.catalog import Catalog

        _ = self.owner
        catalog = Catalog(self.settings.catalog_url)
        if self.settings.database_url is None:  # the embedded catalog: /health checks its file stays the same
            from store.on_disk import OnDisk

            self._on_disk["catalog"] = OnDisk.of(self.settings.data_dir / "catalog.db", sqlite=True)
        return catalog

    @cached_property
    def files(self) -> FileStore:
        return FileStore(self.settings.files_dir)

    @cached_property
    def index(self) -> VectorIndex:
        from store.vectors import open_vector_index

        _ = self.owner
        index = open_vector_index(self.settings)
        if self.settings.qdrant_url is None:
            from store.on_disk import OnDisk

            self._on_disk["vector_index"] = OnDisk.of(self.settings.qdrant_path)
        return index

    def encoder(self) -> SiglipEncoder:
        """The SigLIP encoder (``models``). Raises ModelUnavailable."""
        return self.models.image_encoder()

    def vlm(self) -> VlmBackend:
        """The VLM backend (``models``). Raises ModelUnavailable saying how to configure one."""
        return self.models.vlm()

    @cached_property
    def ingestor(self) -> Ingestor:
        from ingest.pipeline import Ingestor

        return Ingestor(self.settings, self.catalog, self.files, self.index, self.models)

    @cached_property
    def searcher(self) -> Searcher:
        from retrieval.search import Searcher

        s = self.settings
        weights = {"image": s.retrieval.image_weight, "caption": s.retrieval.image_weight}
        return Searcher(self.catalog, self.index, self.models, weights=weights, fusion=s.retrieval.fusion,
                        weigh=lambda question: {"words": s.text_encoder.weight_for(question)})

    # -- operations -------------------------------------------------------------------------------
    def ingest(self, paths: list[Path], *, collection: str | None = None, password: str | None = None,
               on_progress: ProgressFn | None = None, workers: int | None = None,
               names: dict[Path, str] | None = None, let_deletes_in: bool = False,
               ray: str | None = None, who: Principal = LOCAL_ADMIN) -> IngestReport:
        """Ingest files and folders. ``names``: the name the user knows a file by, when not its path (uploads).
        ``workers``: page-reader processes (default: the ``ingest.workers`` setting); ``ray``: read on the Ray
        cluster at this address instead (``ingest.ray_readers``).

        ``let_deletes_in``: deletes of other documents run between page batches instead of waiting for the whole
        ingest (the API's job runner); it costs reading each file once more up front to know which documents
        this ingest writes (a delete of one of those waits until the ingest ends)."""
        from ingest.discover import discover

        files = discover(paths)
        if not files:
            raise InputError(f"no files in {', '.join(str(p) for p in paths)[:300]}; give PDFs or page images "
                             "(.pdf, .png, .jpg, .jpeg, .tif, .tiff) or folders holding them")
        readers = workers or self.settings.ingest.reader_count()
        if collection is not None:
            check_name("collection", collection)
        if not let_deletes_in:
            with self.write_lock:
                report = self.ingestor.ingest(files, collection=collection, password=password,
                                              on_progress=on_progress, workers=readers, names=names, ray=ray)
        else:
            target = collection or self.settings.default_collection
            with self.write_lock.long_writing(_doc_ids(files, target)) as let_in:
                def progress(p: Any) -> None:
                    if on_progress is not None:
                        on_progress(p)
                    let_in()  # called after each file event and page batch: nothing is half-written then

                report = self.ingestor.ingest(files, collection=collection, password=password,
                                              on_progress=progress, workers=readers, names=names, ray=ray)
        where = collection or self.settings.default_collection
        for f in report.files:
            if f.status != "unchanged":
                self.audit(who, "ingest", "ok" if f.status == "ingested" else "failed", collection=where,
                           doc_id=f.doc_id, detail=f"{f.path}" + (f": {f.error.code}" if f.error else ""))
        return report

    def search(self, question: str, *, k: int = 5, collection: str | None = None,
               doc_ids: list[str] | None = None, who: Principal = LOCAL_ADMIN) -> list[Hit]:
        """Top ``k`` pages for ``question`` among what ``who`` sees; ``doc_ids`` are document refs (ids, unique id
        prefixes or file names, as everywhere). Raises NotFound for an unknown or ambiguous ref."""
        resolved = self.resolve_docs(doc_ids, who=who) if doc_ids is not None else None
        return self.searcher.search(question, k=k, collection=collection, doc_ids=resolved, collections=who.scope)

    def search_documents(self, question: str, *, k: int = 5, collection: str | None = None,
                         who: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        """The documents most about ``question``, best first: ``doc_id``, ``name``, ``score`` (its best page's)
        and ``pages`` (its matching pages, best first)."""
        ranked = self.searcher.search_documents(question, k=k, collection=collection, collections=who.scope)
        names = self.catalog.document_names([d for d, _, _ in ranked], complete_only=True)
        return [{"doc_id": d, "name": names[d], "score": score, "pages": pages} for d, score, pages in ranked]

    def resolve_docs(self, refs: list[str], *, who: Principal = LOCAL_ADMIN) -> list[str]:
        """Full document ids of ``refs`` (ids, unique id prefixes ≥ 6 chars, file names), each once, in order.
        Raises NotFound naming the first ref that matches no document or several."""
        return [d.doc_id for d in self._find_docs(refs, who)]

    def _find_docs(self, refs: list[str], who: Principal = LOCAL_ADMIN) -> list[Document]:
        """The documents ``refs`` name, each once, in order. Raises NotFound (see ``resolve_docs``)."""
        found = (self.catalog.find_document(r, who.scope) for r in refs)
        return list({d.doc_id: d for d in found}.values())

    def list_documents(self, collection: str | None = None, *, who: Principal = LOCAL_ADMIN) -> list[Document]:
        return self.catalog.list_documents(collection, who.scope)

    def get_document(self, ref: str, *, who: Principal = LOCAL_ADMIN) -> Document:
        """A document ``who`` sees, by id, id prefix or name. Raises NotFound (the same for one it may not see)."""
        return self.catalog.find_document(ref, who.scope)

    def delete_document(self, ref: str, *, who: Principal = LOCAL_ADMIN) -> Document:
        """Delete a document everywhere. Waits at most a page batch behind a job's ingest, or until the ingest ends
        when it is writing this very document. Raises NotFound."""
        doc_id = self.catalog.find_document(ref, who.scope).doc_id
        with self.write_lock.writing(doc_id):
            doc = self.catalog.find_document(doc_id, who.scope)  # still there once it is our turn (or NotFound)
            self.ingestor.remove(doc.doc_id)
        self.audit(who, "delete", "ok", collection=doc.collection, doc_id=doc.doc_id, detail=doc.name)
        return doc

    def batch_targets(self, schema: str | dict[str, Any], doc_refs: list[str] | None, *,
                      who: Principal = LOCAL_ADMIN) -> list[tuple[str, str]]:
        """Check a batch extraction before it is queued, so a bad request fails now and not in a job: the schema
        reads and is valid, a VLM is configured, the documents exist. Returns (doc_id, name) pairs: ``doc_refs``
        resolved, or every complete document when None. Raises InputError, NotFound, ModelUnavailable."""
        from vlm.user_schema import load_schema, read_schema

        given = read_schema(schema)  # cheap first, as in ``extract``
        self.vlm()
        load_schema(given)
        docs = (self._find_docs(doc_refs, who) if doc_refs
                else [d for d in self.list_documents(who=who) if d.status == "complete"])
        if not docs:
            raise InputError("there are no documents to extract from; upload some first (POST /documents)")
        return [(d.doc_id, d.name) for d in docs]

    # -- jobs (run by the API's job runner, app/jobs.py; any process can list and cancel them) -------------
    def job_dir(self, job_id: str) -> Path:
        """Where an upload job keeps its files until it has run: ``<data_dir>/jobs/<job_id>`` (durable, so a
        restarted server can run it; removed when the job ends)."""
        return self.settings.data_dir / "jobs" / job_id

    def list_jobs(self, state: JobState | None = None, limit: int = 50, *,
                  who: Principal = LOCAL_ADMIN) -> list[Job]:
        return self.catalog.list_jobs(state, limit, who.scope)

    def get_job(self, job_id: str, *, who: Principal = LOCAL_ADMIN) -> Job:
        return self.catalog.get_job(job_id, who.scope)

    def cancel_job(self, job_id: str, *, who: Principal = LOCAL_ADMIN) -> Job:
        """Cancel a job: a queued one never runs (its files are removed now), a running one stops at its next file
        or page batch. Raises NotFound, or Conflict when it has ended."""
        import shutil

        self.catalog.get_job(job_id, who.scope)  # NotFound for a job ``who`` may not see
        job = self.catalog.cancel_job(job_id)
        self.audit(who, "cancel job", "ok", detail=job_id)
        if job.state == "cancelled":
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return job

    # -- pages, answers, extraction ---------------------------------------------------------------
    def page_inputs(self, keys: Sequence[tuple[str, int]]) -> list[PageInput]:
        """Pages as the VLM sees them: rendered at the pixel budget, with their words."""
        from store.pages import render_for_model
        from vlm.pages import PageInput

        v = self.settings.vlm
        records = {(r.page.doc_id, r.page.page_no): r for r in self.catalog.get_pages(keys)}
        out = []
        for doc_id, page in keys:
            rec = records.get((doc_id, page))
            if rec is None:
                raise InputError(f"document {doc_id[:12]} has no page {page}")
            img = render_for_model(self.files.open_path(doc_id), page, max_pixels=v.max_pixels,
                                   min_pixels=v.min_pixels)
            out.append(PageInput(doc_id=doc_id, page=page, image=img, words=rec.table))
        return out

    def page_png(self, ref: str, page: int, *, width: int = 1000, boxes: list[tuple[BBox, str]] | None = None,
                 crop: BBox | None = None, who: Principal = LOCAL_ADMIN) -> bytes:
        """A page as PNG with boxes drawn (styles: verified, approximate, unverified, match); ``crop`` zooms.
        Drawn in a sandboxed renderer: raises RenderFailed past its time or memory bound, RateLimited when every
        renderer stays busy, and what ``store.pages.render_png`` raises."""
        doc = self.catalog.find_document(ref, who.scope)
        return self.renderer.png(self.files.open_path(doc.doc_id), page, width=width, boxes=boxes or [], crop=crop)

    @cached_property
    def renderer(self) -> RenderPool:
        """Page images for people, drawn in sandboxed processes (bounded time and memory, a cap in flight)."""
        from store.render_pool import RenderPool

        srv = self.settings.server
        return RenderPool(size=srv.renders_in_flight, timeout_s=srv.render_timeout_s, wait_s=srv.render_wait_s,
                          memory_mb=self.settings.ingest.worker_memory_mb)

    @contextmanager
    def upload_dir(self) -> Iterator[Path]:
        """A fresh folder for uploaded files, ``<data_dir>/uploads/<pid>-<random>``, removed afterwards (folders
        of processes that were killed are removed by ``reconcile``)."""
        import shutil
        import tempfile

        root = self.settings.data_dir / "uploads"
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def reconcile(self) -> list[str]:
        """What killed processes left behind: upload folders of processes that are gone, partial documents and
        orphaned stored files (see ``Ingestor.reconcile``). Run by the API at start-up; ingest runs it too."""
        import shutil

        import psutil

        for d in (self.settings.data_dir / "uploads").glob("*-*"):
            pid = d.name.split("-", 1)[0]
            if d.is_dir() and (not pid.isdigit() or not psutil.pid_exists(int(pid))):
                shutil.rmtree(d, ignore_errors=True)
        with self.write_lock:
            return self.ingestor.reconcile()

    def ingest_files(self, files: list[tuple[str, bytes]], *, collection: str | None = None,
                     password: str | None = None, on_progress: ProgressFn | None = None,
                     who: Principal = LOCAL_ADMIN) -> IngestReport:
        """Ingest uploaded files given as (name, bytes); catalogued and reported under their names."""
        with self.upload_dir() as tmp:
            names = {}
            for i, (name, data) in enumerate(files):
                sub = tmp / str(i)
                sub.mkdir()
                (sub / Path(name).name).write_bytes(data)
                names[sub / Path(name).name] = Path(name).name
            return self.ingest(list(names), collection=collection, password=password, on_progress=on_progress,
                               names=names, who=who)

    def get_extraction(self, ex_id: str, *, who: Principal = LOCAL_ADMIN) -> tuple[Extraction, dict[str, Any]]:
        """A stored extraction and its hand corrections (field path -> value). Raises NotFound (also for one of
        documents ``who`` may not see)."""
        self._extraction_collection(ex_id, who)
        return self.catalog.get_extraction(ex_id)

    def _extraction_collection(self, ex_id: str, who: Principal) -> str | None:
        """The collection of an extraction's documents (the first); NotFound when ``who`` may not see them all."""
        ids = self.catalog.extraction_doc_ids(ex_id)
        where = self.catalog.collections_of(ids)
        if who.scope is not None and (len(where) < len(ids) or not set(where.values()) <= who.scope):
            raise NotFound(f"no extraction {ex_id[:64]}")
        return next(iter(where.values()), None)

    def correct_extraction(self, ex_id: str, path: str, value: Any, *, who: Principal = LOCAL_ADMIN) -> None:
        """Keep a hand correction of one field (the model's value stays too). Raises NotFound."""
        collection = self._extraction_collection(ex_id, who)
        self.catalog.correct_extraction(ex_id, path, value)
        self.audit(who, "correct extraction", "ok", collection=collection, detail=f"{ex_id} {path}")

    def extraction_table(self, ex_id: str, *, who: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        return extraction_rows(*self.get_extraction(ex_id, who=who))

    def export_extraction(self, ex_id: str, fmt: str, *, who: Principal = LOCAL_ADMIN) -> str:
        return export_extraction(*self.get_extraction(ex_id, who=who), fmt)

    # -- keys and the audit log (admin) -----------------------------------------------------------
    def create_key(self, name: str, role: Role, collections: list[str] | None = None, expires: str | None = None,
                   *, who: Principal = LOCAL_ADMIN) -> NewKey:
        """A new API key, shown once (the catalog keeps its SHA-256). ``expires``: ``30d``, ``12h`` or an ISO
        date. Raises InputError (bad name, role, collection or expiry), Conflict (name taken)."""
        from app.access import make_key, parse_expiry

        check_name("key", name, MAX_KEY_NAME)
        if role not in ROLES:
            raise InputError(f"role '{role}': give one of {', '.join(ROLES)}")
        cols = [check_name("collection", c) for c in collections] if collections is not None else None
        if cols is not None and not cols:
            raise InputError("--collections names no collection; leave it out for every collection")
        key = make_key()
        info = self.catalog.keys.add(name, key, role, cols, parse_expiry(expires))
        self.audit(who, "keys create", "ok", detail=f"{name} ({role}; {', '.join(cols) if cols else 'all'})")
        return NewKey(key=key, info=info)

    def list_keys(self) -> list[KeyInfo]:
        return self.catalog.keys.list()

    def revoke_key(self, name: str, *, who: Principal = LOCAL_ADMIN) -> KeyInfo:
        """Revoke a key now; its queued jobs never run and its running ones stop at their next file or page batch
        (what they finished stays). Raises NotFound."""
        info = self.catalog.keys.revoke(name)
        stopped = []
        for job_id in self.catalog.active_jobs_of(name):
            try:
                self.cancel_job(job_id)
                stopped.append(job_id)
            except PageLensError as e:  # it ended meanwhile
                log.info("job %s of revoked key %s: %s", job_id, name, e.message)
        self.audit(who, "keys revoke", "ok", detail=name + (f"; cancelled its jobs {', '.join(stopped)}"
                                                            if stopped else ""))
        return info

    def audit_events(self, *, since: datetime | None = None, key_name: str | None = None,
                     limit: int = 1000) -> list[AuditEvent]:
        return self.catalog.audit.events(since=since, key_name=key_name, limit=limit)

    def audit(self, who: Principal | None, action: str, outcome: AuditOutcome, *, collection: str | None = None,
              doc_id: str | None = None, detail: str = "") -> None:
        """Record a write or a denial in the audit log. A failure to record is logged, never hides the write."""
        try:
            self.catalog.audit.record(who, action, outcome, collection=collection, doc_id=doc_id, detail=detail)
        except PageLensError as e:
            log.error("could not record '%s' in the audit log: %s", action, e)

    def auth_required(self) -> bool:
        """Whether a shell serving others (the UI) must ask for a key: PAGELENS_API_KEY is set or keys exist."""
        return bool(self.settings.api_key) or self.catalog.keys.any()

    def sign_in(self, key: str) -> Principal | None:
        """The principal of ``key`` (the bootstrap key, or an active catalog key), else None (recorded)."""
        from app.access import Gatekeeper

        who = Gatekeeper(self.catalog, bootstrap_key=self.settings.api_key, local_token=None).principal(key)
        if who is None:
            self.audit(None, "ui sign-in", "denied", detail="wrong, revoked or expired key")
        return who

    def vlm_name(self) -> str:
        """The VLM backend the settings select ('none' when there is none)."""
        from vlm.backend import backend_name

        return backend_name(self.settings)

    def ask(self, question: str, *, k: int = 3, collection: str | None = None,
            doc_ids: list[str] | None = None, who: Principal = LOCAL_ADMIN) -> Answer:
        """Retrieve the top ``k`` pages and answer from their images, with verified evidence."""
        from vlm.answering import ask, not_found

        backend = self.vlm()  # fail fast, before retrieval, when no VLM is configured
        hits = self.search(question, k=k, collection=collection, doc_ids=doc_ids, who=who)
        if not hits:
            return not_found(question, backend.model)
        pages = self.page_inputs([(h.doc_id, h.page) for h in hits])
        v = self.settings.vlm
        return ask(backend, question, pages, max_attempts=v.max_attempts, max_tokens=v.max_new_tokens)

    # -- conversations (app/conversations.py) ----------------------------------------------------------
    def start_conversation(self, *, title: str | None = None, collection: str | None = None,
                           who: Principal = LOCAL_ADMIN) -> ConversationInfo:
        from app import conversations

        return conversations.start(self, title=title, collection=collection, who=who)

    def converse(self, conversation_id: str, question: str, *, k: int = 3, who: Principal = LOCAL_ADMIN) -> Turn:
        """Ask a (follow-up) question in a conversation: rewritten with its history, answered, stored."""
        from app import conversations

        return conversations.ask(self, conversation_id, question, k=k, who=who)

    def get_conversation(self, conversation_id: str, *, who: Principal = LOCAL_ADMIN) -> Conversation:
        from app import conversations

        return conversations.get(self, conversation_id, who=who)

    def list_conversations(self, limit: int = 50, *, who: Principal = LOCAL_ADMIN) -> list[ConversationInfo]:
        from app import conversations

        return conversations.list_all(self, limit=limit, who=who)

    def delete_conversation(self, conversation_id: str, *, who: Principal = LOCAL_ADMIN) -> ConversationInfo:
        from app import conversations

        return conversations.delete(self, conversation_id, who=who)

    def extract(self, schema: str | dict[str, Any] | type, doc_refs: list[str], *, max_pages: int = 8,
                save: bool = True, who: Principal = LOCAL_ADMIN) -> Extraction:
        """Extract ``schema`` from the given documents (``vlm.extraction.extract_pages``: one VLM call up to
        ``max_pages`` pages, field by field over the pages search ranks highest beyond); stored with provenance."""
        from vlm.extraction import extract_pages
        from vlm.user_schema import load_schema, read_schema

        given = read_schema(schema)  # cheap: a missing file or a bad import is reported first
        backend = self.vlm()  # before bounding and checking the schema (the costly part): no VLM fails at once
        user_schema, validate = load_schema(given)
        if not doc_refs:
            raise InputError("give the documents to extract from (ids, names or files)")
        docs = self._find_docs(doc_refs, who)
        ids = [d.doc_id for d in docs]
        v = self.settings.vlm

        def search(question: str, k: int) -> list[tuple[str, int]]:
            return [(h.doc_id, h.page) for h in self.searcher.search(question, k=k, doc_ids=ids)]

        result = extract_pages(backend, user_schema, validate, [(d.doc_id, p) for d in docs
                                                                 for p in range(1, d.page_count + 1)],
                               render=self.page_inputs, search=search, max_pages=max_pages,
                               per_field=v.windows_per_field, max_attempts=v.max_attempts,
                               max_tokens=max(v.max_new_tokens, 1024))
        result = self._calibrated(result, user_schema)
        if save:
            self.catalog.save_extraction(result, model=backend.model, doc_ids=ids)
            self.audit(who, "extract", "ok", collection=docs[0].collection, doc_id=docs[0].doc_id,
                       detail=f"extraction {result.id}" + (f" of {len(docs)} documents" if len(docs) > 1 else ""))
        return result

    def _calibrated(self, ex: Extraction, user_schema: dict[str, Any]) -> Extraction:
        """``ex`` with the newest calibration profile for its model and schema applied (``app.calibration``)."""
        from app.calibration import apply_profile
        from vlm.structured import inline_refs
        from vlm.user_schema import leaf_kinds

        profiles = self.catalog.calibrations()
        return apply_profile(ex, profiles, leaf_kinds(inline_refs(user_schema))) if profiles else ex

    # -- calibration profiles ----------------------------------------------------------------------
    def save_calibration(self, profile: CalibrationProfile, *, who: Principal = LOCAL_ADMIN) -> CalibrationProfile:
        """Keep a fitted profile as the next version for its model and schema (admins: it changes every
        extraction's confidence)."""
        saved = self.catalog.save_calibration(profile)
        self.audit(who, "calibrate", "ok", detail=f"profile {saved.ref} for {saved.model} / {saved.schema_hash}")
        return saved

    def calibrations(self, schema_hash: str | None = None, *, who: Principal = LOCAL_ADMIN) -> list[CalibrationProfile]:
        return self.catalog.calibrations(schema_hash)

    def delete_calibration(self, ref: str, *, who: Principal = LOCAL_ADMIN) -> CalibrationProfile:
        gone = self.catalog.delete_calibration(ref)
        self.audit(who, "delete calibration", "ok", detail=f"profile {gone.ref}")
        return gone

    def corrected_extractions(self, schema_hash: str, *,
                              who: Principal = LOCAL_ADMIN) -> list[tuple[Extraction, dict[str, Any]]]:
        """The reviewed (hand-corrected) extractions of a schema, as labels for calibration (admins)."""
        return self.catalog.corrected_extractions(schema_hash)

    def extract_each(self, schema: str | dict[str, Any] | type, targets: list[tuple[str, str]], *, max_pages: int,
                     concurrency: int | None = None, on_result: Any = None,
                     who: Principal = LOCAL_ADMIN) -> list[Any]:
        """One extraction per (doc_id, name) target, several at once, resumable (``app.batch.extract_each``)."""
        from app.batch import extract_each

        return extract_each(self, schema, targets, max_pages=max_pages, concurrency=concurrency,
                            on_result=on_result, who=who)

    def locate(self, ref: str, page: int, value: object, near: list[float] | None = None, *,
               who: Principal = LOCAL_ADMIN) -> LocateResult:
        """Where on this page is this value? The verifier alone, no model."""
        from grounding.verifier import locate

        doc = self.catalog.find_document(ref, who.scope)
        rec = self.catalog.get_page(doc.doc_id, page)
        try:
            near_box = BBox.of(near) if near is not None else None
        except ValueError as e:
            raise InputError(f"near must be [x0, y0, x1, y1] fractions of the page with x0<x1, y0<y1 ({e})") from e
        loc = locate(value, rec.table, near_box)
        return LocateResult(status=loc.status, bbox=loc.bbox.as_list() if loc.bbox else None,
                            boxes=[b.as_list() for b in loc.boxes], confidence=loc.confidence,
                            matched_text=loc.matched_text, ambiguous=loc.ambiguous, note=loc.note,
                            candidates=[Candidate(bbox=c.bbox, boxes=list(c.boxes), matched_text=c.matched_text)
                                        for c in loc.candidates])

    def health(self, *, counts: bool = True, who: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """Probe the catalog (one primary-key lookup) and the vector index (a point count). Returns ``status``
        ``ok``, or ``degraded`` with ``failed`` = {part: why}; with ``counts``, the numbers of documents and
        indexed pages too (leave them out for callers without the API key)."""
        from vlm.backend import backend_name

        failed: dict[str, str] = {}
        found: dict[str, int] = {}
        try:
            found["documents"] = self.catalog.count_documents(who.scope)  # one COUNT: cheap whatever the size
        except Exception as e:  # a probe reports every failure, whatever raised it
            log.warning("health: the catalog failed: %s", e)
            failed["catalog"] = f"{e.__class__.__name__}: {str(e)[:300]}"
        try:
            pages = self.index.count()  # the probe, whatever the scope
            found["pages"] = pages if who.scope is None else self.catalog.count_pages(who.scope)
        except Exception as e:
            log.warning("health: the vector index failed: %s", e)
            failed["vector_index"] = f"{e.__class__.__name__}: {str(e)[:300]}"
        out: dict[str, Any] = {"status": "degraded" if failed else "ok", "vlm": backend_name(self.settings),
                               "vector_store": "qdrant-server" if self.settings.qdrant_url else "qdrant-edge"}
        for part, disk in self._on_disk.items():
            why = disk.problem() if disk is not None else None
            if why is not None and part not in failed:
                log.error("health: %s", why)
                failed[part] = why
        out["status"] = "degraded" if failed else "ok"
        if failed:
            out["failed"] = failed
        if counts:
            out.update(found)
        return out

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if "index" in self.__dict__:
            self.index.close()
        if "catalog" in self.__dict__:
            self.catalog.close()
        if "renderer" in self.__dict__:
            self.renderer.close()
        if self.__dict__.get("owner") is not None:
            self.owner.release()  # type: ignore[union-attr]


def _doc_ids(files: list[Path], collection: str) -> set[str]:
    """The ids ``files`` may have as documents of ``collection`` (``schemas.ids``); an unreadable file is left out
    (the ingest reports it)."""
    from schemas.ids import collection_doc_id, doc_id_of_file

    ids = set()
    for f in files:
        try:
            content = doc_id_of_file(f)
        except OSError:
            continue
        ids |= {content, collection_doc_id(content, collection)}
    return ids
