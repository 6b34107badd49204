"""The catalog: documents, their names, pages and words, through SQLAlchemy (SQLite by default, any SQLAlchemy URL —
PostgreSQL in production); with its extractions (``store.catalog_extractions``), jobs (``store.catalog_jobs``),
keys and audit log (``store.access``) in modules of their own and its tables in ``store.tables``. Words are kept
per page as one compact blob, since they are always read a page at a time."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from schemas.documents import Document, Page, PageWordsSource, Word
from schemas.errors import ConfigError, NotFound, StoreError
from store.catalog_calibration import Calibrations
from store.catalog_conversations import Conversations
from store.catalog_extractions import Extractions
from store.catalog_jobs import JobQueue
from store.sql_errors import store_errors, translated
from store.tables import documents, metadata, names, now, pages

if TYPE_CHECKING:  # word tables (numpy) are decoded on the page paths only: listing documents stays light
    from schemas.wordtable import WordTable
    from store.access import AuditLog, KeyStore

__all__ = ["Catalog", "PageRecord", "metadata", "store_errors"]


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

@translated
class Catalog(Extractions, JobQueue, Conversations, Calibrations):
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
        at = now()
        with self.engine.begin() as c:
            exists = c.execute(select(documents.c.doc_id).where(documents.c.doc_id == doc_id)).first()
            if exists:
                c.execute(update(documents).where(documents.c.doc_id == doc_id).values(
                    status="partial", collection=collection, page_count=page_count, updated_at=at))
            else:
                c.execute(insert(documents).values(
                    doc_id=doc_id, name=name, kind=kind, collection=collection, size_bytes=size_bytes,
                    page_count=page_count, status="partial", stages="{}", pending="[]",
                    created_at=at, updated_at=at))
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
                                  "pending": json.dumps(sorted(pending)), "updated_at": now()}
        if collection is not None:
            values["collection"] = collection
        with self.engine.begin() as c:
            c.execute(update(documents).where(documents.c.doc_id == doc_id).values(**values))

    def set_collection(self, doc_id: str, collection: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(documents).where(documents.c.doc_id == doc_id)
                      .values(collection=collection, updated_at=now()))

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

def _decode(blob: bytes) -> WordTable:
    from schemas.wordtable import WordTable

    return WordTable.decode(blob)

