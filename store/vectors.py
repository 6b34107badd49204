"""The vector index: one interface, two implementations (Qdrant Edge embedded; a Qdrant server through
qdrant-client). One collection of pages; named vectors ``image`` and ``caption`` (SigLIP, dense, cosine),
``words`` (the text encoder: a multivector, one row per chunk of the page, scored by MaxSim), ``patches`` (the
late-interaction retriever: a multivector, one row per pooled image patch, no HNSW graph — it only reranks), each
created when its encoder first provides it, and ``text`` (sparse BM25 with the IDF modifier).

Payload of a point: ``doc_id``, ``page`` (1-based), ``collection``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from schemas.errors import ConfigError
from schemas.settings import Settings

SPARSE_VECTOR = "text"
COLLECTION = "pages"
RERANK_VECTOR = "patches"
MULTIVECTORS = frozenset({"words", RERANK_VECTOR})  # named vectors holding several rows a point (MaxSim)


@dataclass(frozen=True)
class VectorSpec:
    """How a dense vector is stored: ``datatype`` of its values, Qdrant ``quantization`` beside them, and whether it
    gets an HNSW graph (``hnsw=False``: a vector that only reranks candidates found by others — a graph over
    multivectors costs minutes per thousand pages to build and is never used; BENCHMARKS.md)."""

    datatype: Literal["float32", "float16"] = "float32"
    quantization: Literal["none", "scalar", "binary"] = "none"
    hnsw: bool = True

    def as_dict(self) -> dict[str, object]:
        return {"datatype": self.datatype, "quantization": self.quantization, "hnsw": self.hnsw}


PLAIN = VectorSpec()  # float32, not quantized, with HNSW: every vector but the rerank's


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class PagePoint:
    """One page's vectors and payload. ``dense`` maps a vector name to an L2-normalised float list (a list of
    them for the MULTIVECTORS)."""

    id: str
    doc_id: str
    page: int
    collection: str
    text: SparseVec
    dense: dict[str, list[float] | list[list[float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredPage:
    doc_id: str
    page: int
    collection: str
    score: float


RRF_K = 60  # Qdrant's RRF: a page ranked r (from 0) in a list scores 1 / (RRF_K + r) there


@dataclass(frozen=True)
class PageQuery:
    """A hybrid query: one prefetch per given vector (one query vector each, for the MULTIVECTORS too), fused
    with ``fusion`` — RRF inside the engine, or weighted DBSF — each list weighted by ``weights`` (by vector name;
    1 when not given), filtered by
    collection/documents. ``collections``: the tenant filter, the collections the asker sees (None: all), applied
    inside the query (in every prefetch and the fusion), never to its results."""

    dense: dict[str, list[float]]
    sparse: SparseVec | None
    limit: int = 5
    collection: str | None = None
    doc_ids: Sequence[str] | None = None
    collections: Sequence[str] | None = None
    prefetch_limit: int = 50
    rrf_k: int = RRF_K
    weights: dict[str, float] | None = None
    fusion: Literal["rrf", "dbsf"] = "rrf"  # dbsf: weighted score fusion (``store.fusion``) of the same lists
    # A late-interaction query (its rows): the fused top ``rerank_candidates`` are reranked by MaxSim against the
    # pages' ``patches`` — with RRF inside the one query (a candidate without patches then drops out), with DBSF
    # over exactly the fused pages (one without patches follows the reranked ones: ``reranked_after``).
    rerank: list[list[float]] | None = None
    rerank_candidates: int = 64

    def weight_list(self, names: Sequence[str]) -> list[float] | None:
        """The fusion's weights in prefetch order (``names``), or None when every list weighs 1."""
        if not self.weights or all(self.weights.get(n, 1.0) == 1.0 for n in names):
            return None
        return [self.weights.get(n, 1.0) for n in names]


def reranked_after(reranked: Sequence[ScoredPage], fused: Sequence[ScoredPage], limit: int) -> list[ScoredPage]:
    """The reranked pages (MaxSim scores), then the fused candidates that had no ``patches`` to rerank (a document
    whose stage is still pending), in fused order with score 0 — so a page is never lost to the rerank."""
    seen = {(s.doc_id, s.page) for s in reranked}
    rest = [ScoredPage(s.doc_id, s.page, s.collection, 0.0) for s in fused if (s.doc_id, s.page) not in seen]
    return [*reranked, *rest][:limit]


def query_vector(name: str, v: list[float]) -> list[float] | list[list[float]]:
    """A query vector as ``name`` is searched: one row of a multivector for the MULTIVECTORS."""
    return [v] if name in MULTIVECTORS else v


class VectorIndex(Protocol):
    def ensure_dense(self, name: str, dim: int, spec: VectorSpec = PLAIN) -> bool:
        """Make sure dense vector ``name`` exists with ``dim`` stored as ``spec``; recreate it (dropping old values)
        when either changed. Returns True when it was (re)created."""
        ...

    def dense_dims(self) -> dict[str, int]: ...

    def upsert(self, points: Sequence[PagePoint]) -> None: ...

    def query(self, q: PageQuery) -> list[ScoredPage]: ...

    def pages_of(self, doc_id: str) -> set[int]:
        """1-based page numbers that have a point for ``doc_id``."""
        ...

    def doc_ids(self) -> set[str]: ...

    def count(self, doc_id: str | None = None) -> int: ...

    def update_vectors(self, points: Sequence[PagePoint]) -> None:
        """Replace only the vectors given in each point (``text`` and any ``dense``); the others stay."""
        ...

    def set_collection(self, doc_id: str, collection: str) -> None: ...

    def delete_document(self, doc_id: str) -> None: ...

    def flush(self) -> None: ...

    def optimize(self) -> None:
        """Build search indexes (HNSW) for what was written; a no-op where the engine does it by itself."""
        ...

    def close(self) -> None: ...


def open_vector_index(settings: Settings) -> VectorIndex:
    """Qdrant Edge under ``data_dir/qdrant`` by default; a server (or ``:memory:``) when ``qdrant_url`` is set.

    Raises StoreLocked when another process holds the embedded store, ConfigError on a bad URL.
    """
    if settings.qdrant_url:
        from store.qdrant_server import ServerIndex

        return ServerIndex(settings.qdrant_url, api_key=settings.qdrant_api_key)
    from store.qdrant_edge import EdgeIndex

    return EdgeIndex(settings.qdrant_path)


MAX_MULTIVECTOR_FLOATS = 1_048_575  # Qdrant's cap on one point's multivector (rows × dim < 2**20)


def check_dim(name: str, vector: Sequence[float] | Sequence[Sequence[float]], dims: dict[str, int]) -> None:
    if name not in dims:
        raise ConfigError(f"vector '{name}' does not exist yet; call ensure_dense first")
    rows = vector if name in MULTIVECTORS else [vector]
    if name in MULTIVECTORS and not rows:
        raise ConfigError(f"multivector '{name}' needs at least one row (leave it out of the point instead)")
    if name in MULTIVECTORS and len(rows) * dims[name] > MAX_MULTIVECTOR_FLOATS:
        raise ConfigError(f"multivector '{name}' has {len(rows)} rows of {dims[name]}: over Qdrant's "
                          f"{MAX_MULTIVECTOR_FLOATS + 1:,} floats a point; lower the rows kept per page")
    for row in rows:
        if not isinstance(row, Sequence) or len(row) != dims[name]:
            got = len(row) if isinstance(row, Sequence) else type(row).__name__
            raise ConfigError(f"vector '{name}' has dimension {dims[name]}, got {got}")
