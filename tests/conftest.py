from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on a hub: fail at once (see OFFLINE_MODELS.md)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from schemas.settings import EncoderSettings, IngestSettings, Settings, TextEncoderSettings, VlmSettings

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
PDFS = CORPUS / "pdfs"
BADPDF = CORPUS / "badpdf"


PG_URL = os.environ.get("PAGELENS_TEST_POSTGRES_URL", "postgresql+psycopg://pagelens:pagelens@127.0.0.1:5432/pagelens")


def postgres_url() -> str | None:
    """PG_URL when a PostgreSQL answers there (CI starts one: .ci/postgres.sh), else None."""
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=2):
            return PG_URL
    except Exception:
        return None


@contextmanager
def own_schema(url: str, prefix: str = "t") -> Iterator[str]:
    """``url`` (PostgreSQL) made to keep its tables in a fresh schema of their own, dropped on leaving (so runs
    never see each other's rows, and the processes they start share them through the URL)."""
    import uuid

    import psycopg

    plain, schema = url.replace("postgresql+psycopg", "postgresql"), f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(plain, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL with a schema of its own for this test (``own_schema``)."""
    url = postgres_url()
    if url is None:
        pytest.skip(f"no PostgreSQL at {PG_URL} (CI starts one; set PAGELENS_TEST_POSTGRES_URL)")
    with own_schema(url) as schema_url:
        yield schema_url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not CORPUS.exists():
        skip = pytest.mark.skip(reason=f"test corpus not found at {CORPUS}")
        for item in items:
            if "corpus" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


def make_settings(data_dir: Path, encoder_model: str | None, *, captions: bool = False, vlm_backend: str = "auto",
                  text_encoder: bool = False, **ingest: object) -> Settings:
    """Settings for in-process tests: captions and the text encoder off unless asked (each stage has its own
    tests); ``vlm_backend="words"`` for the offline VLM stand-in."""
    enc = EncoderSettings(model=encoder_model) if encoder_model else EncoderSettings(enabled=False)
    return Settings(data_dir=data_dir, encoder=enc, ingest=IngestSettings(**ingest),  # type: ignore[arg-type]
                    text_encoder=TextEncoderSettings(enabled=text_encoder),
                    vlm=VlmSettings(captions=captions, backend=vlm_backend))  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, tiny_siglip: Path) -> Settings:
    return make_settings(tmp_path / "data", str(tiny_siglip))


@pytest.fixture
def service(settings: Settings) -> Iterator[object]:
    from app.service import Service

    svc = Service(settings)
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def tiny_qwen25(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen25vl"))


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen2vl"), qwen2=True)


@pytest.fixture(autouse=True)
def _text_encoder_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built from the environment in a test (the UI, a server thread) get the text encoder off unless the
    test turns it on: its stage has its own tests, and on 2 cores it costs ~70 ms a page."""
    monkeypatch.setenv("PAGELENS_TEXT_ENCODER__ENABLED", "false")


def forbid_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any read of a file's pages fail the test (until ``monkeypatch.undo()``): for stages that must work from
    the catalog and the stored file alone."""
    from ingest import reader

    real_run = reader.ReaderPool.run

    def no_reading(pool: reader.ReaderPool, jobs: list[reader.ReadJob]) -> object:
        if jobs:
            raise AssertionError("the pages were read again")
        return real_run(pool, jobs)

    monkeypatch.setattr(reader.ReaderPool, "run", no_reading)
