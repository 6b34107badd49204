"""Extraction of a generated 300-page document (issue 10): VLM calls used, pages read, wall time, fields verified.
The invoice number is printed on page 217, the total on page 3, line items run over pages 40-41 (a table whose
header repeats on page 41), the rest is contract boilerplate. Runs the
offline ``words`` backend (no GPU here), so the wall time is PageLens's own work: page selection by hybrid
search, rendering the chosen pages, verification.

    python bench/long_extract.py [--pages 300] [--max-pages 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.app.test_long_extract import LINE_ITEMS, _contract

SCHEMA = {"type": "object", "properties": {"invoice_number": {"type": "string"},
                                           "total": {"type": "number", "description": "total due"},
                                           "line_items": LINE_ITEMS},
          "required": ["invoice_number", "total", "line_items"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--max-pages", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"PAGELENS_DATA_DIR": str(Path(tmp) / "data"), "PAGELENS_ENCODER__ENABLED": "false",
                           "PAGELENS_VLM__BACKEND": "words", "PAGELENS_VLM__CAPTIONS": "false"})
        from app.service import Service

        svc = Service()
        svc.ingest([_contract(Path(tmp) / "contract.pdf", args.pages)])
        t0 = time.perf_counter()
        ex = svc.extract(SCHEMA, ["contract.pdf"], max_pages=args.max_pages)
        dt = time.perf_counter() - t0
        svc.close()
    verified = sum(f.status == "verified" for f in ex.fields)
    pages = sorted({p.page for p in ex.pages_used})
    print(f"{args.pages} pages, --max-pages {args.max_pages}: {ex.attempts} VLM calls, {len(pages)} pages read "
          f"({pages}), {dt:.2f} s, {verified}/{len(ex.fields)} values verified, {len(ex.conflicts)} conflicts")
    print(f"invoice_number={ex.data['invoice_number']} total={ex.data['total']} "
          f"line_items={len(ex.data['line_items'])}: {ex.data['line_items']}")


if __name__ == "__main__":
    main()
