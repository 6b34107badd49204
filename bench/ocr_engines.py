"""OCR engines side by side on the scanned receipts (issue 22, item 2), in one run.

    python bench/ocr_engines.py [--limit 20] [--ingest] [--work /tmp/ocr-bench] [--runtimes auto,onnxruntime]

For each engine (``rapidocr`` 3.x with PP-OCRv6, the default; ``rapidocr-onnxruntime`` 1.4 with PP-OCRv4, the one
before it) and thread setting: the engine *alone* (its own ``RapidOCR()`` on the image, one process, defaults:
what a user of the bare engine gets), then PageLens's words from it (``ingest.ocr.ocr_words``: word F1 against the
receipts' ground-truth transcripts, as ``bench/ocr_words.py`` scores it). With ``--ingest``: whole-process
``pagelens ingest`` of the same JPGs at the defaults (fresh data dir, encoder as the defaults have it), seconds a
page — the figure the target compares with the old engine alone. ``--runtimes``: PageLens's rows for rapidocr 3.x per
runtime (``PAGELENS_INGEST__OCR_RUNTIME``: ``auto`` is OpenVINO on a CPU; ``onnxruntime``, the runtime before it).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ocr_words import RECEIPTS, truth_words  # noqa: E402
from ingest.pdf import open_document, render  # noqa: E402
from schemas.settings import IngestSettings  # noqa: E402


def images(limit: int) -> list[tuple[Path, object]]:
    s = IngestSettings()
    out = []
    for img in sorted((RECEIPTS / "img").glob("*.jpg"))[:limit]:
        doc = open_document(img, "image", None, 1)
        out.append((img, render(doc[0], s.ocr_dpi, s.max_render_pixels)))
    return out


def bare(engine: str, pages: list) -> float:
    """Seconds a page of the engine alone, as its README shows it (defaults; BGR input; first page warms up)."""
    if engine == "rapidocr":
        from rapidocr import RapidOCR

        ocr = RapidOCR(params={"Global.log_level": "warning"})

        def run(bgr: object) -> None:
            ocr(bgr)
    else:
        from rapidocr_onnxruntime import RapidOCR as Old

        old = Old()

        def run(bgr: object) -> None:
            old(bgr)
    run(pages[0][1][:, :, ::-1])
    t = time.perf_counter()
    for _, image in pages:
        run(image[:, :, ::-1])
    return (time.perf_counter() - t) / len(pages)


def words_f1(engine: str, threads: int, pages: list, runtime: str = "auto") -> tuple[float, float]:
    """(word F1, seconds a page) of PageLens's OCR words on this engine."""
    from ingest.ocr import ocr_words

    ocr_words(pages[0][1], engine, threads, runtime)  # warm-up
    tp = n_ocr = n_truth = 0
    secs = []
    for img, image in pages:
        t = time.perf_counter()
        table = ocr_words(image, engine, threads, runtime)
        secs.append(time.perf_counter() - t)
        got = collections.Counter(w.casefold() for w in table.texts)
        want = collections.Counter(truth_words(RECEIPTS / "box" / f"{img.stem}.csv"))
        tp += sum((got & want).values())
        n_ocr += sum(got.values())
        n_truth += sum(want.values())
    p, r = tp / max(n_ocr, 1), tp / max(n_truth, 1)
    return 2 * p * r / max(p + r, 1e-9), statistics.mean(secs)


def ingest(engine: str, pages: list, work: Path, runtime: str = "auto") -> float:
    """Seconds a page of whole-process ``pagelens ingest`` of the JPGs, the defaults but the engine (and runtime)."""
    data = work / f"data-{engine}-{runtime}"
    shutil.rmtree(data, ignore_errors=True)
    env = {**os.environ, "PAGELENS_DATA_DIR": str(data), "PAGELENS_INGEST__OCR_ENGINE": engine,
           "PAGELENS_INGEST__OCR_RUNTIME": runtime, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli", "ingest", *(str(p) for p, _ in pages)], env=env, cwd=ROOT,
                   check=True, capture_output=True)
    return (time.perf_counter() - t) / len(pages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--ingest", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ocr-bench"))
    ap.add_argument("--engines", default="rapidocr-onnxruntime,rapidocr")
    ap.add_argument("--runtimes", default="auto", help="rapidocr 3.x's runtimes for PageLens's rows")
    ap.add_argument("--no-words", action="store_true", help="skip the word F1 runs (speed only)")
    a = ap.parse_args()
    pages = images(a.limit)
    cores = len(os.sched_getaffinity(0))
    print(f"{len(pages)} receipts, {cores} cores")
    runs = [(e, r) for e in a.engines.split(",") for r in (a.runtimes.split(",") if e == "rapidocr" else ["auto"])]
    print("| engine | runtime | alone, defaults (s/page) | PageLens words, 1 thread (s/page) | all cores (s/page) "
          "| word F1 |")
    print("|---|---|---|---|---|---|")
    alone = {e: bare(e, pages) for e in a.engines.split(",")}
    for engine, runtime in runs:
        if a.no_words:
            print(f"| {engine} | {runtime} | {alone[engine]:.2f} | | | |", flush=True)
            continue
        f1, one = words_f1(engine, 1, pages, runtime)
        _, many = words_f1(engine, cores, pages, runtime)
        print(f"| {engine} | {runtime} | {alone[engine]:.2f} | {one:.2f} | {many:.2f} | {f1:.3f} |", flush=True)
    if a.ingest:
        a.work.mkdir(parents=True, exist_ok=True)
        for engine, runtime in runs:
            print(f"ingest, defaults, {engine} ({runtime}): {ingest(engine, pages, a.work, runtime):.2f} s/page",
                  flush=True)


if __name__ == "__main__":
    main()
