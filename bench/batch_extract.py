"""Batch extraction (``extract --each``) against a stand-in for vLLM: a loopback OpenAI-compatible server that
answers every request after ``--latency`` seconds (issue 10: 200 generated one-page invoices, ≥ 16 documents/s
against a 1.0 s server with 32 slots).

    python bench/batch_extract.py [--docs 200] [--latency 1.0] [--concurrency 16 32]

Generates the invoices, ingests them once (SigLIP off), then times ``extract_each`` per concurrency setting in a
fresh catalog of extractions (so nothing is skipped) and prints documents/s and the most requests in flight."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pymupdf  # noqa: E402

from tests.vlm.chat_server import Gauge, chat_server, ok  # noqa: E402

SCHEMA = {"type": "object", "properties": {"invoice_number": {"type": "string"}, "total": {"type": "number"}}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 32])
    args = ap.parse_args()
    answer = ok(json.dumps({"invoice_number": {"value": "INV-1", "page": 1, "bbox_2d": None},
                            "total": {"value": 9.5, "page": 1, "bbox_2d": None}}))
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.docs):
            doc = pymupdf.open()
            page = doc.new_page()
            for j, line in enumerate([f"Vendor {i} Ltd", f"Invoice number: INV-{i}", f"Total: {i}.50"]):
                page.insert_text((72, 72 + 20 * j), line, fontsize=11)
            files.append(Path(tmp) / f"inv{i:04d}.pdf")
            doc.save(str(files[-1]))
        os.environ.update({"PAGELENS_DATA_DIR": str(Path(tmp) / "data"), "PAGELENS_ENCODER__ENABLED": "false",
                           "PAGELENS_VLM__CAPTIONS": "false"})
        from app.batch import extract_each
        from app.service import Service

        print(f"{'concurrency':>11} {'documents':>9} {'wall s':>7} {'documents/s':>12} {'peak in flight':>15}")
        for n in args.concurrency:
            with chat_server() as srv:
                gauge = Gauge(args.latency, answer)
                srv.script = [gauge] * (args.docs + 10)
                os.environ.update({"PAGELENS_VLM_URL": srv.url, "PAGELENS_VLM__MODEL": f"served-{n}",
                                   "PAGELENS_VLM__CONCURRENCY": str(n)})
                svc = Service()
                report = svc.ingest(files)
                docs = [(f.doc_id or "", f.path) for f in report.files]
                t0 = time.perf_counter()
                results = extract_each(svc, SCHEMA, docs)
                dt = time.perf_counter() - t0
                svc.close()
            assert all(r.status == "extracted" for r in results), [r for r in results if r.status != "extracted"][:2]
            print(f"{n:11d} {len(docs):9d} {dt:7.1f} {len(docs) / dt:12.1f} {gauge.peak:15d}")


if __name__ == "__main__":
    main()
