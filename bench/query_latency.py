"""Hybrid query latency on the embedded store (Qdrant Edge + SQLite catalog) at 20k and 100k pages.

Pages are real: the words of octave.pdf's pages (fetch with bench/corpus.sh), cycled under synthetic document
ids; their image vectors are random unit 768-d vectors (SigLIP2 B/16 size). Questions are 2-4 words drawn from
the corpus; the question's dense vector is random (no encoder in the loop: this measures the store).
Prints p50/p95 of (a) the index's hybrid RRF query alone and (b) the full search (BM25 query vector, hybrid
query, catalog page fetch, matching words with boxes), and (c) the full search as an API key scoped to one of
``--collections`` collections sees it (the tenant filter inside the query, on the is_tenant index). Target: p95
<= 20 ms at 100k, scoped or not.

    python bench/query_latency.py [--sizes 20000 100000] [--queries 300] [--collections 100]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pymupdf

from ingest.pdf import font_headings, outline_by_page, text_words
from retrieval.search import Searcher
from schemas.documents import Page
from schemas.ids import point_id
from store import bm25
from store.catalog import Catalog, PageRecord
from store.qdrant_edge import EdgeIndex
from store.vectors import PagePoint, PageQuery

HERE = Path(__file__).resolve().parent
DIM = 768
PAGES_PER_DOC = 100


def load_pages(pdf: Path) -> tuple[list, list[list[str]]]:
    """The words and headings (outline titles, larger-font lines) of each page, as ingest reads them."""
    doc = pymupdf.open(pdf)
    outline = outline_by_page(doc)
    return ([text_words(doc[i]) for i in range(doc.page_count)],
            [[*outline.get(i + 1, []), *font_headings(doc[i])] for i in range(doc.page_count)])


def build(root: Path, n: int, tables: list, headings: list[list[str]], rng: np.random.Generator,
          collections: int) -> tuple[EdgeIndex, Catalog, float]:
    index, catalog = EdgeIndex(root / "qdrant"), Catalog(f"sqlite:///{root / 'catalog.db'}")
    index.ensure_dense("image", DIM)
    sparse = [bm25.embed_document(" ".join(t.texts), h) for t, h in zip(tables, headings, strict=True)]
    nnz = np.mean([len(v.indices) for v in sparse])
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        pts, recs = [], []
        dense = rng.standard_normal((min(1000, n - start), DIM)).astype(np.float32)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        for k in range(len(dense)):
            i = start + k
            doc_id, page_no = f"{i // PAGES_PER_DOC:064x}", i % PAGES_PER_DOC + 1
            table = tables[i % len(tables)]
            where = f"c{(i // PAGES_PER_DOC) % collections}"
            pts.append(PagePoint(id=point_id(doc_id, page_no), doc_id=doc_id, page=page_no, collection=where,
                                 text=sparse[i % len(tables)], dense={"image": dense[k].tolist()}))
            recs.append(PageRecord(Page(doc_id=doc_id, page_no=page_no, width_pt=612, height_pt=792,
                                        words_source="text_layer", word_count=len(table)), table))
        for doc_id in sorted({p.doc_id for p in pts}):
            catalog.begin_document(doc_id=doc_id, name=f"bench-{doc_id[-6:]}.pdf", kind="pdf",
                                   collection=f"c{int(doc_id, 16) % collections}", size_bytes=1,
                                   page_count=PAGES_PER_DOC)
        index.upsert(pts)
        catalog.put_pages(recs)
    index.flush()
    for doc_id in {f"{i // PAGES_PER_DOC:064x}" for i in range(n)}:
        catalog.complete_document(doc_id, stages={}, pending=[])
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    index.optimize()
    print(f"  built {n} pages in {build_s:.1f}s; optimize (HNSW) {time.perf_counter() - t1:.1f}s; "
          f"{nnz:.0f} sparse terms a page")
    return index, catalog, build_s


def pct(xs: list[float]) -> str:
    a = np.array(xs)
    return f"p50 {np.percentile(a, 50):6.2f} ms  p95 {np.percentile(a, 95):6.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--pdf", default=str(HERE / "out" / "octave.pdf"))
    ap.add_argument("--collections", type=int, default=100, help="documents spread over this many collections")
    args = ap.parse_args()
    tables, headings = load_pages(Path(args.pdf))
    vocab = sorted({w for t in tables for w in t.texts if w.isalpha() and len(w) > 3})
    rng = np.random.default_rng(0)
    for n in args.sizes:
        root = Path(tempfile.mkdtemp(prefix="pagelens-q-"))
        print(f"{n} pages:")
        index, catalog, _ = build(root, n, tables, headings, rng, args.collections)
        questions = [" ".join(rng.choice(vocab, size=rng.integers(2, 5))) for _ in range(args.queries)]
        qv = rng.standard_normal((args.queries, DIM)).astype(np.float32)
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)
        searcher = Searcher(catalog, index, encoder=None)
        for warm in questions[:20]:
            searcher.search(warm, k=5)
        raw, full, scoped = [], [], []
        mine = frozenset({"c7"})
        for q, v in zip(questions, qv, strict=True):
            t = time.perf_counter()
            index.query(PageQuery(dense={"image": v.tolist()}, sparse=bm25.embed_query(q), limit=5))
            raw.append((time.perf_counter() - t) * 1000)
            searcher._dense = lambda _q, v=v: {"image": v.tolist()}  # type: ignore[method-assign]
            t = time.perf_counter()
            hits = searcher.search(q, k=5)
            full.append((time.perf_counter() - t) * 1000)
            assert hits
            t = time.perf_counter()
            own = searcher.search(q, k=5, collections=mine)
            scoped.append((time.perf_counter() - t) * 1000)
            assert own and {h.collection for h in own} == set(mine)
        print(f"  index hybrid RRF query: {pct(raw)}")
        print(f"  full search (k=5):      {pct(full)}")
        print(f"  full search, a key scoped to 1 of {args.collections} collections: {pct(scoped)}")
        index.close()
        catalog.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
