"""Qdrant Edge (qdrant-edge-py): Qdrant's embedded engine, the default vector index. One process at a time."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from schemas.errors import StoreError, StoreLocked
from schemas.ids import point_id
from store.fusion import dbsf
from store.space import check_can_open
from store.vectors import (
    MULTIVECTORS,
    PLAIN,
    RERANK_VECTOR,
    SPARSE_VECTOR,
    PagePoint,
    PageQuery,
    ScoredPage,
    VectorSpec,
    check_dim,
    query_vector,
    reranked_after,
)

log = logging.getLogger(__name__)
_DIMS_FILE = "pagelens_vectors.json"


def _filter(collection: str | None, doc_ids: Sequence[str] | None,
            collections: Sequence[str] | None = None) -> qe.Filter | None:
    must: list[Any] = []
    if collections is not None:  # the tenant filter (a keyword index with is_tenant: points stored by collection)
        must.append(qe.FieldCondition(key="collection", match=qe.MatchAny(any=sorted(collections))))
    if collection is not None:
        must.append(qe.FieldCondition(key="collection", match=qe.MatchValue(value=collection)))
    if doc_ids is not None:
        must.append(qe.FieldCondition(key="doc_id", match=qe.MatchAny(any=list(doc_ids))))
    return qe.Filter(must=must) if must else None


def _doc_filter(doc_id: str) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(key="doc_id", match=qe.MatchValue(value=doc_id))])


_DATATYPES = {"float32": None, "float16": qe.VectorStorageDatatype.Float16}
_QUANTIZATION = {"none": lambda: None,
                 "scalar": lambda: qe.ScalarQuantizationConfig(qe.ScalarType.Int8, always_ram=True),
                 "binary": lambda: qe.BinaryQuantizationConfig(always_ram=True)}

_OPEN: set[Path] = set()  # shards open in this process: a second handle is refused before Qdrant loads it
_OPEN_LOCK = threading.Lock()


def _locked(path: Path) -> StoreLocked:
    return StoreLocked(f"the embedded vector store at {path} is open in another PageLens process (UI, API or a batch "
                       "job). Stop that process, or run several at once against a Qdrant server: set "
                       "PAGELENS_QDRANT_URL.")


class EdgeIndex:
    """Vector index in a Qdrant Edge shard at ``path``. One handle per process: loading a shard writes to it
    even when the load then fails on the shard's lock, so a second handle is refused before it is loaded (and a
    second process by ``store.owner``, before anything is opened)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key = self.path.resolve()
        with _OPEN_LOCK:
            if self._key in _OPEN:
                raise _locked(self.path)
            _OPEN.add(self._key)
        try:
            self._open()
        except BaseException:
            with _OPEN_LOCK:
                _OPEN.discard(self._key)
            raise
        self._closed = False
        saved = json.loads(self._dims_path.read_text()) if self._dims_path.exists() else {}
        if "dims" not in saved:  # the first format: {name: dim}, every vector stored as VectorSpec()
            saved = {"dims": saved, "specs": {}}
        self._dims: dict[str, int] = saved["dims"]
        self._specs: dict[str, VectorSpec] = {n: VectorSpec(**v) for n, v in saved["specs"].items()}

    def _open(self) -> None:
        self._dims_path = self.path.parent / f"{self.path.name}.{_DIMS_FILE}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_can_open(self.path.parent)
        try:
            if (self.path / "wal").exists() or (self.path / "segments").exists():
                self._shard = qe.EdgeShard.load(str(self.path))
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                cfg = qe.EdgeConfig(sparse_vectors={
                    SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)})
                self._shard = qe.EdgeShard.create(str(self.path), cfg)
                self._shard.update(qe.UpdateOperation.create_field_index("doc_id", qe.PayloadSchemaType.Keyword))
            self._tenant_index()
        except Exception as e:
            if "WouldBlock" in str(e):
                raise _locked(self.path) from e
            raise StoreError(f"cannot open the embedded vector store at {self.path}: {e}") from e

    def _tenant_index(self) -> None:
        """The ``collection`` field as the tenant index (a keyword index with is_tenant); a shard made before
        tenancy gets it in place."""
        info = self._shard.info().payload_schema.get("collection")
        if info is None or not getattr(info.params, "is_tenant", False):
            self._shard.update(qe.UpdateOperation.create_field_index("collection",
                                                                    qe.KeywordIndexParams(is_tenant=True)))

    # -- schema -----------------------------------------------------------------------------------
    def dense_dims(self) -> dict[str, int]:
        return dict(self._dims)

    def ensure_dense(self, name: str, dim: int, spec: VectorSpec = PLAIN) -> bool:
        if self._dims.get(name) == dim and self._specs.get(name, PLAIN) == spec:
            return False
        if name in self._dims:
            self._shard.update(qe.UpdateOperation.delete_vector_name(name))
        multi = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim) if name in MULTIVECTORS else None
        self._shard.update(qe.UpdateOperation.create_dense_vector(name, dim, qe.Distance.Cosine,
                                                                  multivector_config=multi,
                                                                  datatype=_DATATYPES[spec.datatype]))
        self._dims[name] = dim
        self._specs[name] = spec
        tmp = self._dims_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"dims": self._dims, "specs": {n: v.as_dict() for n, v in self._specs.items()}}))
        tmp.replace(self._dims_path)
        if not spec.hnsw or spec.quantization != "none":
            self._reload()
        return True

    def _reload(self) -> None:
        """Reopen the shard with its whole config given: the one way Qdrant Edge takes a vector's HNSW and
        quantization settings (``create_dense_vector`` has neither); the shard's stored config is rewritten."""
        self._shard.flush()
        self._shard.close()
        self._shard = qe.EdgeShard.load(str(self.path), qe.EdgeConfig(
            vectors={n: self._params(n, d) for n, d in self._dims.items()},
            sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}))

    def _params(self, name: str, dim: int) -> qe.EdgeVectorParams:
        spec = self._specs.get(name, PLAIN)
        return qe.EdgeVectorParams(
            dim, qe.Distance.Cosine,
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim) if name in MULTIVECTORS else None,
            datatype=_DATATYPES[spec.datatype],
            hnsw_config=None if spec.hnsw else qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10000),
            quantization_config=_QUANTIZATION[spec.quantization]())

    # -- writes -----------------------------------------------------------------------------------
    def _vectors(self, p: PagePoint) -> dict[str, Any]:
        vec: dict[str, Any] = {SPARSE_VECTOR: qe.SparseVector(indices=p.text.indices, values=p.text.values)}
        for name, v in p.dense.items():
            check_dim(name, v, self._dims)
            vec[name] = v
        return vec

    def upsert(self, points: Sequence[PagePoint]) -> None:
        if not points:
            return
        out = [qe.Point(id=p.id, vector=self._vectors(p),
                        payload={"doc_id": p.doc_id, "page": p.page, "collection": p.collection}) for p in points]
        self._shard.update(qe.UpdateOperation.upsert_points(out))

    def update_vectors(self, points: Sequence[PagePoint]) -> None:
        if points:
            self._shard.update(qe.UpdateOperation.update_vectors(
                [qe.PointVectors(id=p.id, vector=self._vectors(p)) for p in points]))

    def set_collection(self, doc_id: str, collection: str) -> None:
        self._shard.update(qe.UpdateOperation.set_payload_by_filter(_doc_filter(doc_id),
                                                                    {"collection": collection}))

    def delete_document(self, doc_id: str) -> None:
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(_doc_filter(doc_id)))

    def flush(self) -> None:
        self._shard.flush()

    def optimize(self) -> None:
        """Qdrant Edge builds HNSW only when asked (a server does it in the background)."""
        self._shard.optimize()

    def close(self) -> None:
        if not self._closed:
            self._shard.close()
            self._closed = True
            with _OPEN_LOCK:
                _OPEN.discard(self._key)

    # -- reads ------------------------------------------------------------------------------------
    def query(self, q: PageQuery) -> list[ScoredPage]:
        flt = _filter(q.collection, q.doc_ids, q.collections)
        names = [name for name in q.dense if name in self._dims]
        prefetches = [qe.Prefetch(limit=q.prefetch_limit, query=qe.Query.Nearest(query_vector(name, q.dense[name]),
                                                                                 using=name), filter=flt)
                      for name in names]
        if q.sparse is not None and q.sparse.indices:
            sv = qe.SparseVector(indices=q.sparse.indices, values=q.sparse.values)
            prefetches.append(qe.Prefetch(limit=q.prefetch_limit, query=qe.Query.Nearest(sv, using=SPARSE_VECTOR),
                                          filter=flt))
            names.append(SPARSE_VECTOR)
        if not prefetches:
            return []
        rerank = q.rerank if q.rerank and RERANK_VECTOR in self._dims else None
        if q.fusion == "dbsf":  # each list as ranked by the engine, fused here with its weight
            lists = [(q.weights.get(name, 1.0) if q.weights else 1.0,
                      self._scored(self._shard.query(qe.QueryRequest(limit=p.limit, query=p.query, filter=flt,
                                                                     with_payload=True))))
                     for name, p in zip(names, prefetches, strict=True)]
            if rerank is None:
                return dbsf(lists, q.limit, q.prefetch_limit)
            fused = dbsf(lists, q.rerank_candidates, q.prefetch_limit)  # then MaxSim over exactly those pages
            ids = qe.HasIdCondition({point_id(s.doc_id, s.page) for s in fused})
            res = self._shard.query(qe.QueryRequest(
                limit=len(fused), query=qe.Query.Nearest(rerank, using=RERANK_VECTOR),
                filter=qe.Filter(must=[ids, *((flt.must or []) if flt else [])]), with_payload=True))
            return reranked_after(self._scored(res), fused, q.limit)
        fusion = qe.Fusion.Rrf(k=q.rrf_k, weights=q.weight_list(names))
        if rerank is not None:  # one query: the fused top candidates, reranked by MaxSim against their patches
            inner = qe.Prefetch(limit=q.rerank_candidates, prefetches=prefetches, query=fusion,  # type: ignore[arg-type]
                                filter=flt)
            res = self._shard.query(qe.QueryRequest(limit=q.limit, prefetches=[inner],
                                                    query=qe.Query.Nearest(rerank, using=RERANK_VECTOR),
                                                    with_payload=True, filter=flt))
            return self._scored(res)
        res = self._shard.query(qe.QueryRequest(limit=q.limit, prefetches=prefetches,
                                                query=fusion,  # type: ignore[arg-type]
                                                with_payload=True, filter=flt))
        return self._scored(res)

    @staticmethod
    def _scored(res: Sequence[Any]) -> list[ScoredPage]:
        out = []
        for r in res:
            pl = r.payload or {}
            out.append(ScoredPage(doc_id=pl["doc_id"], page=int(pl["page"]), collection=pl["collection"],
                                  score=float(r.score)))
        return out

    def _scroll(self, flt: qe.Filter | None) -> list[Any]:
        out: list[Any] = []
        offset = None
        while True:
            batch = self._shard.scroll(qe.ScrollRequest(offset=offset, limit=1000, filter=flt, with_payload=True,
                                                        with_vector=False))
            records, offset = batch if isinstance(batch, tuple) else (batch, None)
            out.extend(records)
            if offset is None or not records:
                return out

    def pages_of(self, doc_id: str) -> set[int]:
        return {int(r.payload["page"]) for r in self._scroll(_doc_filter(doc_id))}

    def doc_ids(self) -> set[str]:
        return {r.payload["doc_id"] for r in self._scroll(None)}

    def count(self, doc_id: str | None = None) -> int:
        return int(self._shard.count(qe.CountRequest(filter=_doc_filter(doc_id) if doc_id else None)))
