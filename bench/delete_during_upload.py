"""How long a ``DELETE /documents/{id}`` waits while an upload job is ingesting (issue 10, item 3: deletes waited
11–26 s behind uploads when an upload held the write lock for its whole ingest).

Ingests ``--docs`` small generated PDFs, then uploads ``--files`` copies of R-intro (114 pages each, distinct
bytes) as one job, and deletes the small documents one after another while the job runs; prints each delete's
wait, the median and the worst, and how far the job was. ``--whole-lock`` runs the ingest the old way (one lock
for the whole upload) for comparison. Default settings otherwise (the SigLIP encoder off unless ``--encoder``).

    python bench/delete_during_upload.py [--files 4] [--docs 8] [--whole-lock]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pymupdf
from fastapi.testclient import TestClient

from app.api import create_app
from app.service import Service
from schemas.settings import EncoderSettings, Settings, VlmSettings

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT.parent / "shared" / "corpus" / "pdfs"


def _pdf(path: Path, text: str, source: Path | None = None) -> Path:
    doc = pymupdf.open()
    if source is not None:
        with pymupdf.open(source) as src:
            doc.insert_pdf(src)
    doc.new_page().insert_text((72, 72), text)
    doc.save(str(path))
    doc.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=4, help="copies of R-intro in the upload job")
    ap.add_argument("--docs", type=int, default=8, help="small documents deleted while it runs")
    ap.add_argument("--encoder", default=None, help="a SigLIP model (default: encoder off)")
    ap.add_argument("--whole-lock", action="store_true", help="ingest under one lock for the whole upload (before)")
    args = ap.parse_args()
    if args.whole_lock:  # the ingest as it ran before jobs: deletes wait for all of it
        plain = Service.ingest

        def whole(self: Service, *a: Any, **k: Any) -> Any:
            return plain(self, *a, **{**k, "let_deletes_in": False})

        Service.ingest = whole  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        enc = EncoderSettings(model=args.encoder) if args.encoder else EncoderSettings(enabled=False)
        s = Settings(data_dir=t / "data", encoder=enc, vlm=VlmSettings(captions=False))
        with TestClient(create_app(s)) as c:
            small = [_pdf(t / f"s{i}.pdf", f"small document {i}") for i in range(args.docs)]
            files = [("files", (p.name, p.read_bytes(), "application/pdf")) for p in small]
            ids = [f["doc_id"] for f in c.post("/documents", params={"wait": "true"}, files=files).json()["files"]]
            big = [_pdf(t / f"b{i}.pdf", f"copy {i}", PDFS / "R-intro.pdf") for i in range(args.files)]
            job = c.post("/documents", files=[("files", (p.name, p.read_bytes(), "application/pdf"))
                                              for p in big]).json()["job_id"]
            while c.get(f"/jobs/{job}").json()["progress"]["pages_done"] == 0:
                time.sleep(0.01)
            waits = []
            for doc_id in ids:
                t0 = time.perf_counter()
                assert c.delete(f"/documents/{doc_id}").status_code == 200
                waits.append(time.perf_counter() - t0)
                p = c.get(f"/jobs/{job}").json()
                print(f"delete {doc_id[:8]}: {waits[-1] * 1000:7.1f} ms   job {p['state']}, "
                      f"{p['progress']['pages_done']}/{args.files * 114} pages")
                time.sleep(0.1)
            while c.get(f"/jobs/{job}").json()["state"] == "running":
                time.sleep(0.05)
    mode = "whole-upload lock (before)" if args.whole_lock else "deletes let in between page batches"
    print(f"{mode}: median {statistics.median(waits) * 1000:.0f} ms, worst {max(waits) * 1000:.0f} ms "
          f"over {len(waits)} deletes")


if __name__ == "__main__":
    main()
