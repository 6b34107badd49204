"""The catalog's tables, in one metadata (``Catalog`` creates them and adds new nullable columns in place, on
SQLite and PostgreSQL alike; ``store.access`` adds the keys and audit tables to the same metadata)."""

from __future__ import annotations

from datetime import UTC, datetime

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
    UniqueConstraint,
)

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

# calibration profiles (grounding/calibration.py): every version kept; the newest for a model and schema applies
calibration_profiles = Table(
    "calibration_profiles", metadata,
    Column("id", String(32), primary_key=True),
    Column("model", Text, nullable=False),
    Column("schema_hash", String(32), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("body", Text, nullable=False),  # the CalibrationProfile as JSON
    UniqueConstraint("model", "schema_hash", "version", name="uq_calibration_version"),
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



# conversations (app/conversations.py): a question after another, each answer kept with its citations as answered
conversations = Table(
    "conversations", metadata,
    Column("id", String(32), primary_key=True),
    Column("title", Text, nullable=False),
    Column("collection", String(200), nullable=True),  # the collection it asks in (None: every one of the key's)
    Column("key_name", String(100), nullable=False, index=True),  # who started it: it and admins see it
    Column("scope", Text, nullable=True),  # JSON list: the key's collections when it started (None: all)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
)

conversation_turns = Table(
    "conversation_turns", metadata,
    Column("conversation_id", String(32), primary_key=True),
    Column("n", Integer, primary_key=True),
    Column("question", Text, nullable=False),
    Column("standalone", Text, nullable=False),
    Column("answer", Text, nullable=False),  # JSON Answer
    Column("citations", Text, nullable=False),  # JSON list of Citation, frozen when answered
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def now() -> datetime:
    return datetime.now(UTC)
