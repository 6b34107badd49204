"""A Qdrant server (or qdrant-client's ``:memory:`` local mode, for tests) through qdrant-client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from schemas.errors import StoreError
from schemas.ids import point_id
from store.fusion import dbsf
from store.vectors import (
    COLLECTION,
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

_DATATYPES = {"float32": None, "float16": models.Datatype.FLOAT16}
_QUANTIZATION: dict[str, Any] = {
    "scalar": lambda: models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
        type=models.ScalarType.INT8, always_ram=True)),
    "binary": lambda: models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))}


def _filter(collection: str | None, doc_ids: Sequence[str] | None,
            collections: Sequence[str] | None = None) -> models.Filter | None:
    must: list[Any] = []
    if collections is not None:  # the tenant filter (a keyword index with is_tenant: points stored by collection)
        must.append(models.FieldCondition(key="collection", match=models.MatchAny(any=sorted(collections))))
    if collection is not None:
        must.append(models.FieldCondition(key="collection", match=models.MatchValue(value=collection)))
    if doc_ids is not None:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids))))
    return models.Filter(must=must) if must else None


def _scored(points: Sequence[Any]) -> list[ScoredPage]:
    out = []
    for r in points:
        pl = r.payload or {}
        out.append(ScoredPage(doc_id=pl["doc_id"], page=int(pl["page"]), collection=pl["collection"],
                              score=float(r.score)))
    return out


def _doc_filter(doc_id: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])


# collections are the unit of tenancy: Qdrant keeps each tenant's points together and plans filters by it
TENANT_INDEX = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)


class ServerIndex:
    """Vector index in collection ``pages`` of a Qdrant server at ``url`` (``:memory:`` = in-process)."""

    def __init__(self, url: str, api_key: str | None = None, collection: str = COLLECTION) -> None:
        self.name = collection
        self._specs: dict[str, VectorSpec] = {}  # set by this handle (a server's HNSW/quantization: not compared)
        try:
            self._client = (QdrantClient(location=":memory:") if url == ":memory:"
                            else QdrantClient(url=url, api_key=api_key, timeout=30))
            if not self._client.collection_exists(collection):
                self._client.create_collection(
                    collection, vectors_config={},
                    sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)})
                if url != ":memory:":  # local mode has no payload indexes (and warns)
                    self._client.create_payload_index(collection, "doc_id", models.PayloadSchemaType.KEYWORD)
                    self._client.create_payload_index(collection, "collection", TENANT_INDEX)
            elif url != ":memory:":
                self._tenant_index()
        except Exception as e:
            raise StoreError(f"cannot reach the Qdrant server at {url}: {e}. Check PAGELENS_QDRANT_URL "
                             "(and PAGELENS_QDRANT_API_KEY), or unset it to use the embedded store.") from e

    def _tenant_index(self) -> None:
        """A collection made before tenancy: its ``collection`` index becomes the tenant index, in place."""
        schema = self._client.get_collection(self.name).payload_schema.get("collection")
        params = getattr(schema, "params", None) if schema is not None else None
        if not getattr(params, "is_tenant", False):
            self._client.create_payload_index(self.name, "collection", TENANT_INDEX)

    def dense_dims(self) -> dict[str, int]:
        return {k: v.size for k, v in self._stored().items()}

    def _stored(self) -> dict[str, Any]:
        vectors = self._client.get_collection(self.name).config.params.vectors
        return vectors if isinstance(vectors, dict) else {}

    def ensure_dense(self, name: str, dim: int, spec: VectorSpec = PLAIN) -> bool:
        have = self._stored().get(name)
        if have is not None and have.size == dim and (have.datatype or models.Datatype.FLOAT32) == \
                (_DATATYPES[spec.datatype] or models.Datatype.FLOAT32) and self._specs.get(name, spec) == spec:
            return False
        if have is not None:
            self._client.delete_vector_name(self.name, name)
        multi = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM) \
            if name in MULTIVECTORS else None
        self._client.create_vector_name(self.name, name, models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=dim, distance=models.Distance.COSINE, multivector_config=multi,
                                           datatype=_DATATYPES[spec.datatype])))
        if not spec.hnsw or spec.quantization != "none":  # the vector's graph and quantization, set in place
            self._client.update_collection(self.name, vectors_config={name: models.VectorParamsDiff(
                hnsw_config=None if spec.hnsw else models.HnswConfigDiff(m=0),
                quantization_config=_QUANTIZATION[spec.quantization]() if spec.quantization != "none" else None)})
        self._specs[name] = spec
        return True

    def _vectors(self, points: Sequence[PagePoint]) -> list[dict[str, Any]]:
        dims = self.dense_dims() if any(p.dense for p in points) else {}
        out = []
        for p in points:
            vec: dict[str, Any] = {SPARSE_VECTOR: models.SparseVector(indices=p.text.indices, values=p.text.values)}
            for name, v in p.dense.items():
                check_dim(name, v, dims)
                vec[name] = v
            out.append(vec)
        return out

    def upsert(self, points: Sequence[PagePoint]) -> None:
        if not points:
            return
        out = [models.PointStruct(id=p.id, vector=v,
                                  payload={"doc_id": p.doc_id, "page": p.page, "collection": p.collection})
               for p, v in zip(points, self._vectors(points), strict=True)]
        self._client.upsert(self.name, out, wait=True)

    def update_vectors(self, points: Sequence[PagePoint]) -> None:
        if points:
            out = [models.PointVectors(id=p.id, vector=v) for p, v in zip(points, self._vectors(points), strict=True)]
            self._client.update_vectors(self.name, points=out, wait=True)

    def set_collection(self, doc_id: str, collection: str) -> None:
        self._client.set_payload(self.name, {"collection": collection}, points=_doc_filter(doc_id), wait=True)

    def delete_document(self, doc_id: str) -> None:
        self._client.delete(self.name, points_selector=models.FilterSelector(filter=_doc_filter(doc_id)), wait=True)

    def flush(self) -> None:
        """Writes use ``wait=True``: durable on the server when they return."""

    def optimize(self) -> None:
        """The server's optimizer runs in the background."""

    def close(self) -> None:
        self._client.close()

    def query(self, q: PageQuery) -> list[ScoredPage]:
        flt = _filter(q.collection, q.doc_ids, q.collections)
        dims = self.dense_dims() if q.dense or q.rerank else {}
        names = [name for name in q.dense if name in dims]
        prefetch = [models.Prefetch(query=query_vector(name, q.dense[name]), using=name, limit=q.prefetch_limit,
                                    filter=flt) for name in names]
        if q.sparse is not None and q.sparse.indices:
            prefetch.append(models.Prefetch(
                query=models.SparseVector(indices=q.sparse.indices, values=q.sparse.values),
                using=SPARSE_VECTOR, limit=q.prefetch_limit, filter=flt))
            names.append(SPARSE_VECTOR)
        if not prefetch:
            return []
        rerank = q.rerank if q.rerank and RERANK_VECTOR in dims else None
        if q.fusion == "dbsf":  # each list as ranked by the server (one batch call), fused here with its weight
            batch = self._client.query_batch_points(self.name, [
                models.QueryRequest(query=p.query, using=p.using, limit=p.limit, filter=flt, with_payload=True)
                for p in prefetch])
            lists = [(q.weights.get(name, 1.0) if q.weights else 1.0, _scored(r.points))
                     for name, r in zip(names, batch, strict=True)]
            if rerank is None:
                return dbsf(lists, q.limit, q.prefetch_limit)
            fused = dbsf(lists, q.rerank_candidates, q.prefetch_limit)  # then MaxSim over exactly those pages
            ids = models.HasIdCondition(has_id=[point_id(s.doc_id, s.page) for s in fused])
            res = self._client.query_points(self.name, query=rerank, using=RERANK_VECTOR, limit=len(fused),
                                            query_filter=models.Filter(must=[ids, *([flt] if flt else [])]),
                                            with_payload=True)
            return reranked_after(_scored(res.points), fused, q.limit)
        rrf = models.RrfQuery(rrf=models.Rrf(k=q.rrf_k, weights=q.weight_list(names)))
        if rerank is not None:  # one query: the fused top candidates, reranked by MaxSim against their patches
            res = self._client.query_points(
                self.name, prefetch=models.Prefetch(prefetch=prefetch, query=rrf, limit=q.rerank_candidates,
                                                    filter=flt),
                query=rerank, using=RERANK_VECTOR, limit=q.limit, with_payload=True, query_filter=flt)
            return _scored(res.points)
        res = self._client.query_points(self.name, prefetch=prefetch, query=rrf,
                                        limit=q.limit, with_payload=True, query_filter=flt)
        return _scored(res.points)

    def _scroll(self, flt: models.Filter | None) -> list[Any]:
        out: list[Any] = []
        offset = None
        while True:
            records, offset = self._client.scroll(self.name, scroll_filter=flt, limit=1000, offset=offset,
                                                  with_payload=True, with_vectors=False)
            out.extend(records)
            if offset is None:
                return out

    def pages_of(self, doc_id: str) -> set[int]:
        return {int((r.payload or {})["page"]) for r in self._scroll(_doc_filter(doc_id))}

    def doc_ids(self) -> set[str]:
        return {(r.payload or {})["doc_id"] for r in self._scroll(None)}

    def count(self, doc_id: str | None = None) -> int:
        return self._client.count(self.name, count_filter=_doc_filter(doc_id) if doc_id else None, exact=True).count
