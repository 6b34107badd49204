"""The catalog: documents, their names, pages and words, extractions and jobs, through SQLAlchemy (SQLite by
default, any SQLAlchemy URL — PostgreSQL in production). Words are kept per page as one compact blob, since
they are always read a page at a time."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from schemas.answers import Extraction
from schemas.documents import Document, Page, PageWordsSource, Word
from schemas.errors import ConfigError, Conflict, NotFound, StoreError
from schemas.jobs import Job, JobKind, JobState

if TYPE_CHECKING:  # word tables (numpy) are decoded on the page paths only: listing documents stays light
    from schemas.wordtable import WordTable
    from store.access import AuditLog, KeyStore

metadata = MetaData()

documents = Table(
    "documents", metadata,
    Column("doc_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("collection", String(200), nullable=False, index=True),
    Column("size_bytes", Integer, nullable=False),
    Column("page_count", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("stages", Text, nullable=False, default="{}"),
    Column("pending", Text, nullable=False, default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

names = Table(
    "document_names", metadata,
    Column("doc_id", String(64), primary_key=True),
    Column("name", Text, primary_key=True),
)

pages = Table(
    "pages", metadata,
    Column("doc_id", String(64), primary_key=True),
    Column("page_no", Integer, primary_key=True),
    Column("width_pt", Float, nullable=False),
    Column("height_pt", Float, nullable=False),
    Column("rotation", Integer, nullable=False),
    Column("words_source", String(16), nullable=False),
    Column("word_count", Integer, nullable=False),
    Column("words", LargeBinary, nullable=False),
    Column("caption", Text, nullable=True),
    Column("headings", Text, nullable=True),  # JSON list of the page's headings (added in 0.2: nullable)
)


extractions = Table(
    "extractions", metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model", Text, nullable=False),
    Column("schema_hash", String(32), nullable=False),
    Column("prompt_hash", String(32), nullable=False),
    Column("doc_ids", Text, nullable=False),
    Column("result", Text, nullable=False),
    Column("corrections", Text, nullable=False, default="{}"),
)

# background jobs (app/jobs.py): state and progress here, so they survive a restart and any process can read them
jobs = Table(
    "jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("params", Text, nullable=False),  # JSON
    Column("progress", Text, nullable=False, default="{}"),  # JSON JobProgress
    Column("errors", Text, nullable=False, default="[]"),  # JSON list of JobError
    Column("error", Text, nullable=True),  # JSON JobError: why the whole job failed
    Column("result", Text, nullable=True),  # JSON IngestReport or list of BatchResult
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("owner", String(200), nullable=True),  # host:pid of the runner that claimed it
    Column("key_name", String(100), nullable=True),  # the API key that submitted it (None: a local shell)
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)


# the collections a job touches, one row each: a key sees a job only when it sees every one of them
job_collections = Table(
    "job_collections", metadata,
    Column("job_id", String(32), primary_key=True),
    Column("collection", String(200), primary_key=True),
)


@dataclass(frozen=True)
class PageRecord:
    """A page and its words: ``stored`` is the columnar table, or its encoded blob (as the catalog stores it, and
    as the readers send it) decoded only when ``table`` is first used; ``words`` builds the Word models on first
    use."""

    page: Page
    stored: WordTable | bytes

    @cached_property
    def table(self) -> WordTable:
        return _decode(self.stored) if isinstance(self.stored, bytes) else self.stored

    def blob(self) -> bytes:
        return self.stored if isinstance(self.stored, bytes) else self.stored.encode()

    @cached_property
    def words(self) -> list[Word]:
        return self.table.words()


def _now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL + NORMAL: a committed transaction survives a killed process; readers don't block the writer.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _add_missing_columns(engine: Engine) -> None:
    """Bring a catalog made by an older PageLens up to this schema: columns added since are nullable, so they
    are added in place (``ALTER TABLE ... ADD COLUMN``, SQLite and PostgreSQL alike); nothing is rewritten."""
    from sqlalchemy import inspect as sa_inspect

    insp = sa_inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have and col.nullable:
                kind = col.type.compile(dialect=engine.dialect)
                try:
                    with engine.begin() as c:
                        c.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}')
                except SQLAlchemyError:  # another process added it first: fine if it is there now
                    if col.name not in {c["name"] for c in sa_inspect(engine).get_columns(table.name)}:
                        raise


class Catalog:
    """Documents, names and pages in a SQL database at ``url``."""

    def __init__(self, url: str, *, pooled: bool = True) -> None:
        """``pooled=False``: a connection per use, closed after it (a Ray worker's writer: thousands of workers
        must not each hold a PostgreSQL connection for their whole life)."""
        try:
            kw: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
            self.engine: Engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"), **kw)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            import store.access  # noqa: F401  (its tables, keys and audit, share this metadata)

            metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
        except ModuleNotFoundError as e:
            raise ConfigError(f"the database driver for {url.split(':')[0]} is not installed ({e.name}); for "
                              "PostgreSQL install it with: pip install 'pagelens[postgres]'") from e
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open the catalog database ({e.__class__.__name__}: {e}). "
                             "Check PAGELENS_DATABASE_URL.") from e

    def close(self) -> None:
        self.engine.dispose()

    @cached_property
    def keys(self) -> KeyStore:
        from store.access import KeyStore

        return KeyStore(self.engine)

    @cached_property
    def audit(self) -> AuditLog:
        from store.access import AuditLog

        return AuditLog(self.engine)

    # -- documents --------------------------------------------------------------------------------
    def _document(self, row: Any, doc_names: list[str], sources: dict[str, int]) -> Document:
        return Document(doc_id=row.doc_id, name=row.name, names=doc_names, kind=row.kind,
                        collection=row.collection, size_bytes=row.size_bytes, page_count=row.page_count,
                        status=row.status, stages=json.loads(row.stages), pending=json.loads(row.pending),
                        words_sources=sources, created_at=row.created_at)

    def get_document(self, doc_id: str) -> Document | None:
        with self.engine.connect() as c:
            row = c.execute(select(documents).where(documents.c.doc_id == doc_id)).first()
            if row is None:
                return None
            doc_names = list(c.execute(select(names.c.name).where(names.c.doc_id == doc_id)).scalars())
            q = select(pages.c.words_source, func.count()).where(pages.c.doc_id == doc_id)
            sources: dict[str, int] = dict(c.execute(q.group_by(pages.c.words_source)).tuples().all())
        return self._document(row, sorted(doc_names), sources)

    def find_document(self, ref: str, collections: Collection[str] | None = None) -> Document:
        """A document by full id, unique id prefix (≥ 6 hex chars) or file name (exactly: ``%`` and ``_`` are
        characters, not wildcards), among the documents of ``collections`` (None: all). A document outside them
        is not there: the same NotFound, and it never makes a name or prefix ambiguous. Raises NotFound."""
        doc = self.get_document(ref)
        if doc is not None and (collections is None or doc.collection in collections):
            return doc
        in_scope = documents.c.collection.in_(sorted(collections)) if collections is not None else None
        with self.engine.connect() as c:
            q = select(names.c.doc_id).where(
                (names.c.name == ref) | names.c.name.endswith("/" + ref, autoescape=True))
            if in_scope is not None:
                q = q.join(documents, documents.c.doc_id == names.c.doc_id).where(in_scope)
            ids = set(c.execute(q).scalars())
            if not ids and len(ref) >= 6 and all(ch in "0123456789abcdef" for ch in ref.lower()):
                q = select(documents.c.doc_id).where(documents.c.doc_id.startswith(ref.lower(), autoescape=True))
                ids = set(c.execute(q.where(in_scope) if in_scope is not None else q).scalars())
        if len(ids) == 1:
            found = self.get_document(ids.pop())
            if found is not None:
                return found
        if len(ids) > 1:
            raise NotFound(f"'{ref}' matches {len(ids)} documents; use a longer id (see: pagelens docs list)")
        short = " (an id prefix needs at least 6 characters)" if len(ref) < 6 and ref.isalnum() else ""
        raise NotFound(f"no document '{ref}'{short}; list them with: pagelens docs list")

    def list_documents(self, collection: str | None = None,
                       collections: Collection[str] | None = None) -> list[Document]:
        """Documents in ``collection`` (None: all), among ``collections`` (None: all), oldest first."""
        with self.engine.connect() as c:
            q = select(documents).order_by(documents.c.created_at)
            if collection is not None:
                q = q.where(documents.c.collection == collection)
            if collections is not None:
                q = q.where(documents.c.collection.in_(sorted(collections)))
            rows = c.execute(q).all()
            all_names: dict[str, list[str]] = {}
            for d, n in c.execute(select(names.c.doc_id, names.c.name)).tuples():
                all_names.setdefault(d, []).append(n)
            all_sources: dict[str, dict[str, int]] = {}
            for d, s, n in c.execute(select(pages.c.doc_id, pages.c.words_source, func.count())
                                     .group_by(pages.c.doc_id, pages.c.words_source)).tuples():
                all_sources.setdefault(d, {})[s] = n
        return [self._document(r, sorted(all_names.get(r.doc_id, [])), all_sources.get(r.doc_id, {}))
                for r in rows]

    def count_documents(self, collections: Collection[str] | None = None) -> int:
        q = select(func.count()).select_from(documents)
        if collections is not None:
            q = q.where(documents.c.collection.in_(sorted(collections)))
        with self.engine.connect() as c:
            return int(c.execute(q).scalar_one())

    def count_pages(self, collections: Collection[str]) -> int:
        """Pages of the complete documents of ``collections`` (a scoped ``/health``)."""
        q = select(func.coalesce(func.sum(documents.c.page_count), 0)).where(
            documents.c.collection.in_(sorted(collections)), documents.c.status == "complete")
        with self.engine.connect() as c:
            return int(c.execute(q).scalar_one())

    def collections_of(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """``doc_id -> collection`` of those of ``doc_ids`` that exist."""
        ids = set(doc_ids)
        if not ids:
            return {}
        with self.engine.connect() as c:
            return dict(c.execute(select(documents.c.doc_id, documents.c.collection)
                                  .where(documents.c.doc_id.in_(ids))).tuples().all())

    def document_names(self, doc_ids: Sequence[str], *, complete_only: bool = False) -> dict[str, str]:
        """``doc_id -> name`` for the given ids, in one query; ``complete_only`` leaves out documents still being
        ingested (or left ``partial`` by a killed run)."""
        if not doc_ids:
            return {}
        q = select(documents.c.doc_id, documents.c.name).where(documents.c.doc_id.in_(set(doc_ids)))
        if complete_only:
            q = q.where(documents.c.status == "complete")
        with self.engine.connect() as c:
            return dict(c.execute(q).tuples().all())

    def known_ids(self, doc_ids: Sequence[str]) -> set[str]:
        """Which of ``doc_ids`` have a catalog row (any status)."""
        out: set[str] = set()
        ids = list(doc_ids)
        with self.engine.connect() as c:
            for i in range(0, len(ids), 500):
                out |= set(c.execute(select(documents.c.doc_id)
                                     .where(documents.c.doc_id.in_(ids[i:i + 500]))).scalars())
        return out

    def begin_document(self, *, doc_id: str, name: str, kind: str, collection: str, size_bytes: int,
                       page_count: int) -> None:
        """Record a document as ``partial`` before any of its vectors are written (crash safety)."""
        now = _now()
        with self.engine.begin() as c:
            exists = c.execute(select(documents.c.doc_id).where(documents.c.doc_id == doc_id)).first()
            if exists:
                c.execute(update(documents).where(documents.c.doc_id == doc_id).values(
                    status="partial", collection=collection, page_count=page_count, updated_at=now))
            else:
                c.execute(insert(documents).values(
                    doc_id=doc_id, name=name, kind=kind, collection=collection, size_bytes=size_bytes,
                    page_count=page_count, status="partial", stages="{}", pending="[]",
                    created_at=now, updated_at=now))
            self._add_name(c, doc_id, name)

    def _add_name(self, c: Any, doc_id: str, name: str) -> None:
        if not c.execute(select(names.c.doc_id).where(names.c.doc_id == doc_id, names.c.name == name)).first():
            c.execute(insert(names).values(doc_id=doc_id, name=name))

    def add_name(self, doc_id: str, name: str) -> None:
        with self.engine.begin() as c:
            self._add_name(c, doc_id, name)

    def complete_document(self, doc_id: str, *, stages: dict[str, str], pending: Sequence[str],
                          collection: str | None = None) -> None:
        values: dict[str, Any] = {"status": "complete", "stages": json.dumps(stages, sort_keys=True),
                                  "pending": json.dumps(sorted(pending)), "updated_at": _now()}
        if collection is not None:
            values["collection"] = collection
        with self.engine.begin() as c:
            c.execute(update(documents).where(documents.c.doc_id == doc_id).values(**values))

    def set_collection(self, doc_id: str, collection: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(documents).where(documents.c.doc_id == doc_id)
                      .values(collection=collection, updated_at=_now()))

    def partial_documents(self) -> list[str]:
        """Documents a run left unfinished: still being ingested, or being removed."""
        with self.engine.connect() as c:
            q = select(documents.c.doc_id).where(documents.c.status.in_(["partial", "removing"]))
            return list(c.execute(q).scalars())

    def mark_removing(self, doc_id: str) -> None:
        """The first step of removing a document: from now on ``put_pages_if_partial`` writes nothing to it (the
        update waits for writes holding its row)."""
        with self.engine.begin() as c:
            c.execute(update(documents).where(documents.c.doc_id == doc_id).values(status="removing"))

    def delete_document(self, doc_id: str) -> None:
        with self.engine.begin() as c:
            c.execute(delete(pages).where(pages.c.doc_id == doc_id))
            c.execute(delete(names).where(names.c.doc_id == doc_id))
            c.execute(delete(documents).where(documents.c.doc_id == doc_id))

    # -- extractions -------------------------------------------------------------------------------
    def save_extraction(self, ex: Extraction, *, model: str | None = None, doc_ids: Sequence[str] = ()) -> None:
        """Store an extraction. ``model``: the model name as configured (the key ``find_extraction`` matches;
        a server may report another name in ``ex.model``); ``doc_ids``: the documents asked for (a long
        document's extraction uses only some of their pages)."""
        ids = sorted(set(doc_ids) or {p.doc_id for p in ex.pages_used})
        with self.engine.begin() as c:
            c.execute(insert(extractions).values(
                id=ex.id, created_at=ex.created_at or _now(), model=model or ex.model, schema_hash=ex.schema_hash,
                prompt_hash=ex.prompt_hash, doc_ids=json.dumps(ids), result=ex.model_dump_json(), corrections="{}"))

    def find_extraction(self, doc_id: str, model: str, schema_hash: str, prompt_hash: str) -> Extraction | None:
        """The newest extraction of exactly this one document with this model, schema and prompt, if any."""
        with self.engine.connect() as c:
            row = c.execute(select(extractions.c.result).where(
                extractions.c.doc_ids == json.dumps([doc_id]), extractions.c.model == model,
                extractions.c.schema_hash == schema_hash, extractions.c.prompt_hash == prompt_hash)
                .order_by(extractions.c.created_at.desc()).limit(1)).first()
        return Extraction.model_validate_json(row.result) if row is not None else None

    def get_extraction(self, ex_id: str) -> tuple[Extraction, dict[str, Any]]:
        """The extraction and its hand corrections (path -> value). Raises NotFound."""
        with self.engine.connect() as c:
            row = c.execute(select(extractions).where(extractions.c.id == ex_id)).first()
        if row is None:
            raise NotFound(f"no extraction {ex_id}")
        return Extraction.model_validate_json(row.result), json.loads(row.corrections)

    def extraction_doc_ids(self, ex_id: str) -> list[str]:
        """The documents an extraction was asked for. Raises NotFound."""
        with self.engine.connect() as c:
            raw = c.execute(select(extractions.c.doc_ids).where(extractions.c.id == ex_id)).scalar()
        if raw is None:
            raise NotFound(f"no extraction {ex_id[:64]}")
        return list(json.loads(raw))

    def correct_extraction(self, ex_id: str, path: str, value: Any) -> None:
        """Keep a hand correction of one field with the result (the model's value stays too)."""
        _, corr = self.get_extraction(ex_id)
        corr[path] = value
        with self.engine.begin() as c:
            c.execute(update(extractions).where(extractions.c.id == ex_id).values(corrections=json.dumps(corr)))

    # -- jobs -------------------------------------------------------------------------------------
    @staticmethod
    def _job(row: Any) -> Job:
        return Job(job_id=row.id, kind=row.kind, state=row.state, params=json.loads(row.params),
                   progress=json.loads(row.progress), errors=json.loads(row.errors),
                   error=json.loads(row.error) if row.error else None,
                   result=json.loads(row.result) if row.result else None, cancel_requested=bool(row.cancel_requested),
                   key_name=row.key_name,
                   created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at)

    def add_job(self, job_id: str, kind: JobKind, params: dict[str, Any], *, key_name: str | None = None,
                collections: Iterable[str] = ()) -> Job:
        """Record a new job as ``queued``, submitted by ``key_name`` and touching ``collections``."""
        with self.engine.begin() as c:
            c.execute(insert(jobs).values(id=job_id, kind=kind, state="queued", params=json.dumps(params),
                                          progress="{}", errors="[]", cancel_requested=False, created_at=_now(),
                                          key_name=key_name))
            for col in sorted(set(collections)):
                c.execute(insert(job_collections).values(job_id=job_id, collection=col))
        return self.get_job(job_id)

    @staticmethod
    def _jobs_within(q: Any, collections: Collection[str] | None) -> Any:
        """``q`` restricted to the jobs whose collections are all in ``collections`` (and that name some)."""
        if collections is None:
            return q
        jc = job_collections
        outside = select(jc.c.job_id).where(jc.c.job_id == jobs.c.id, jc.c.collection.not_in(sorted(collections)))
        inside = select(jc.c.job_id).where(jc.c.job_id == jobs.c.id)
        return q.where(~outside.exists(), inside.exists())

    def get_job(self, job_id: str, collections: Collection[str] | None = None) -> Job:
        """Raises NotFound (also for a job outside ``collections``)."""
        with self.engine.connect() as c:
            row = c.execute(self._jobs_within(select(jobs).where(jobs.c.id == job_id), collections)).first()
        if row is None:
            raise NotFound(f"no job '{job_id[:64]}'; list the recent ones with GET /jobs (or: pagelens jobs)")
        return self._job(row)

    def list_jobs(self, state: JobState | None = None, limit: int = 50,
                  collections: Collection[str] | None = None) -> list[Job]:
        """The newest ``limit`` jobs, newest first; only those in ``state`` when given, within ``collections``."""
        q = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
        if state is not None:
            q = q.where(jobs.c.state == state)
        with self.engine.connect() as c:
            return [self._job(r) for r in c.execute(self._jobs_within(q, collections))]

    def active_jobs_of(self, key_name: str) -> list[str]:
        """The ids of ``key_name``'s jobs that are queued or running."""
        q = select(jobs.c.id).where(jobs.c.key_name == key_name, jobs.c.state.in_(["queued", "running"]))
        with self.engine.connect() as c:
            return list(c.execute(q).scalars())

    def queued_jobs_of(self, key_name: str) -> int:
        """How many of ``key_name``'s jobs are queued or running (the fair-share cap)."""
        q = select(func.count()).select_from(jobs).where(jobs.c.key_name == key_name,
                                                          jobs.c.state.in_(["queued", "running"]))
        with self.engine.connect() as c:
            return int(c.execute(q).scalar_one())

    def job_owners(self, state: JobState) -> dict[str, str | None]:
        """``job_id -> owner`` (the runner's host:pid) of the jobs in ``state``."""
        with self.engine.connect() as c:
            return dict(c.execute(select(jobs.c.id, jobs.c.owner).where(jobs.c.state == state)).tuples().all())

    def claim_job(self, owner: str) -> Job | None:
        """The oldest queued job, now ``running`` and owned by ``owner``; None when none is queued. Atomic: two
        runners over one database never claim the same job."""
        while True:
            with self.engine.begin() as c:
                row = c.execute(select(jobs.c.id).where(jobs.c.state == "queued")
                                .order_by(jobs.c.created_at, jobs.c.id).limit(1)).first()
                if row is None:
                    return None
                claimed = c.execute(update(jobs).where(jobs.c.id == row.id, jobs.c.state == "queued")
                                    .values(state="running", owner=owner, started_at=_now())).rowcount
            if claimed:
                return self.get_job(row.id)

    def requeue_job(self, job_id: str) -> None:
        """A ``running`` job whose runner is gone goes back to ``queued`` (it is run again from the start)."""
        with self.engine.begin() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "running")
                      .values(state="queued", owner=None))

    def update_job(self, job_id: str, *, progress: dict[str, Any] | None = None,
                   errors: list[dict[str, Any]] | None = None) -> bool:
        """Record a running job's progress (and per-file errors so far). Returns whether a cancel was asked."""
        values: dict[str, Any] = {}
        if progress is not None:
            values["progress"] = json.dumps(progress)
        if errors is not None:
            values["errors"] = json.dumps(errors)
        with self.engine.begin() as c:
            if values:
                c.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            asked = c.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar()
        return bool(asked)

    def finish_job(self, job_id: str, state: JobState, *, result: Any = None,
                   errors: list[dict[str, Any]] | None = None, error: dict[str, Any] | None = None,
                   progress: dict[str, Any] | None = None) -> None:
        """Record a job's end: ``done``, ``failed`` or ``cancelled``, with what it produced (JSON-able)."""
        values: dict[str, Any] = {"state": state, "finished_at": _now(),
                                  "result": json.dumps(result) if result is not None else None,
                                  "error": json.dumps(error) if error is not None else None}
        if errors is not None:
            values["errors"] = json.dumps(errors)
        if progress is not None:
            values["progress"] = json.dumps(progress)
        with self.engine.begin() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job: a queued one is ``cancelled`` at once (it never runs); a running one is asked to stop
        (its runner stops at the next file or page batch). Raises NotFound, or Conflict for a finished job."""
        with self.engine.begin() as c:
            changed = c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "queued")
                                .values(state="cancelled", cancel_requested=True, finished_at=_now())).rowcount
            changed += c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "running")
                                 .values(cancel_requested=True)).rowcount
        job = self.get_job(job_id)
        if not changed:
            raise Conflict(f"job {job_id} has already ended ({job.state}); there is nothing to cancel")
        return job

    # -- pages ------------------------------------------------------------------------------------
    def put_pages(self, records: Iterable[PageRecord]) -> None:
        """Insert or replace pages (one transaction)."""
        recs = list(records)
        if recs:
            with self.engine.begin() as c:
                self._put_pages(c, recs)

    def put_pages_if_partial(self, records: Iterable[PageRecord]) -> bool:
        """``put_pages``, only while the pages' documents are being ingested (status ``partial``), holding a shared
        lock on their rows: a removal (``mark_removing``) waits for this write, or this write sees it and writes
        nothing (returns False). For writers that run beside the driver (Ray workers)."""
        recs = list(records)
        doc_ids = sorted({r.page.doc_id for r in recs})
        with self.engine.begin() as c:
            q = select(documents.c.status).where(documents.c.doc_id.in_(doc_ids)).with_for_update(read=True)
            statuses = list(c.execute(q).scalars())
            if len(statuses) != len(doc_ids) or any(st != "partial" for st in statuses):
                return False
            self._put_pages(c, recs)
        return True

    @staticmethod
    def _put_pages(c: Any, recs: list[PageRecord]) -> None:
        if not recs:
            return
        for doc_id in {r.page.doc_id for r in recs}:
            nos = [r.page.page_no for r in recs if r.page.doc_id == doc_id]
            c.execute(delete(pages).where(pages.c.doc_id == doc_id, pages.c.page_no.in_(nos)))
        c.execute(insert(pages), [
            {"doc_id": r.page.doc_id, "page_no": r.page.page_no, "width_pt": r.page.width_pt,
             "height_pt": r.page.height_pt, "rotation": r.page.rotation, "words_source": r.page.words_source,
             "word_count": r.page.word_count, "words": r.blob(), "caption": r.page.caption,
             "headings": json.dumps(r.page.headings) if r.page.headings else None}
            for r in recs])

    def set_captions(self, doc_id: str, captions: dict[int, str]) -> None:
        with self.engine.begin() as c:
            for page_no, cap in captions.items():
                c.execute(update(pages).where(pages.c.doc_id == doc_id, pages.c.page_no == page_no)
                          .values(caption=cap))

    @staticmethod
    def _page(row: Any) -> Page:
        src: PageWordsSource = row.words_source
        return Page(doc_id=row.doc_id, page_no=row.page_no, width_pt=row.width_pt, height_pt=row.height_pt,
                    rotation=row.rotation, words_source=src, word_count=row.word_count, caption=row.caption,
                    headings=json.loads(row.headings) if row.headings else [])

    def page_count_stored(self, doc_id: str) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(pages).where(pages.c.doc_id == doc_id))
                       .scalar_one())

    def get_page(self, doc_id: str, page_no: int) -> PageRecord:
        recs = self.get_pages([(doc_id, page_no)])
        if not recs:
            raise NotFound(f"document {doc_id[:12]} has no page {page_no}")
        return recs[0]

    def get_pages(self, keys: Sequence[tuple[str, int]]) -> list[PageRecord]:
        """Pages (with words) for ``(doc_id, page_no)`` keys, in the order given; missing ones are left out."""
        if not keys:
            return []
        found: dict[tuple[str, int], PageRecord] = {}
        with self.engine.connect() as c:
            for doc_id in {k[0] for k in keys}:
                nos = [k[1] for k in keys if k[0] == doc_id]
                for row in c.execute(select(pages).where(pages.c.doc_id == doc_id, pages.c.page_no.in_(nos))):
                    found[(doc_id, row.page_no)] = PageRecord(self._page(row), bytes(row.words))
        return [found[k] for k in keys if k in found]

    def iter_pages(self, doc_id: str, batch: int = 64) -> Iterator[PageRecord]:
        """All pages of a document in order, read ``batch`` at a time (bounded memory)."""
        last = 0
        while True:
            with self.engine.connect() as c:
                rows = c.execute(select(pages).where(pages.c.doc_id == doc_id, pages.c.page_no > last)
                                 .order_by(pages.c.page_no).limit(batch)).all()
            if not rows:
                return
            for row in rows:
                yield PageRecord(self._page(row), bytes(row.words))
            last = rows[-1].page_no


def store_errors(fn: Any) -> Any:
    """Turn a database failure (PostgreSQL gone, disk full, locked) into one clear StoreError."""
    import functools
    import inspect

    def translate(e: SQLAlchemyError) -> StoreError:
        why = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:200]
        return StoreError(f"the catalog database failed ({e.__class__.__name__}: {why}); check that it is running "
                          "and reachable (PAGELENS_DATABASE_URL), then retry — finished work is kept")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except SQLAlchemyError as e:
                raise translate(e) from e
        return gen

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as e:
            raise translate(e) from e
    return call


# every public operation of the catalog answers a database failure the same way (one place for the decision)
for _name, _fn in list(vars(Catalog).items()):
    if not _name.startswith("_") and callable(_fn) and _name != "close":
        setattr(Catalog, _name, store_errors(_fn))


def _decode(blob: bytes) -> WordTable:
    from schemas.wordtable import WordTable

    return WordTable.decode(blob)
