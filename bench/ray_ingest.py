"""Local readers vs reading on Ray, on this machine (issue 9): pages/s and the per-file overhead, with a local Ray
cluster started once in this process (its start-up printed apart). Each run ingests into a fresh data dir with no
encoder weights and no captions, so it measures reading + writing.

    python bench/ray_ingest.py [--cpus 2] [--small 50]

Inputs: bench/out/octave.pdf (1,158 pages; bench/corpus.sh), ../shared/corpus/pdfs (3 files, 157 pages), and
``--small`` generated one-page PDFs (the per-file overhead)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _small(folder: Path, n: int) -> list[Path]:
    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        doc = pymupdf.open()
        doc.new_page().insert_text((72, 72), f"Invoice {i}: total {i * 7}.50, delivered to street {i}", fontsize=11)
        doc.save(str(folder / f"s{i:03d}.pdf"))
        out.append(folder / f"s{i:03d}.pdf")
    return out


def _encoder(kind: str) -> Path | None:
    from tests.tiny_models import build_tiny_siglip

    out = Path(tempfile.mkdtemp(prefix="pl-siglip-"))
    if kind == "b16":
        return build_tiny_siglip(out, image_size=224, width=768, layers=12, head_width=64)
    return build_tiny_siglip(out) if kind == "tiny" else None


def _run(files: list[Path], ray: str | None, workers: int, encoder: Path | None = None,
         stores: dict[str, str] | None = None, cpu: list[float] | None = None) -> tuple[float, int]:
    """Seconds and pages of one ingest into a fresh data dir (``stores``: database_url/qdrant_url); the driver's
    CPU seconds appended to ``cpu``."""
    from app.service import Service
    from schemas.settings import EncoderSettings, Settings, VlmSettings

    data = Path(tempfile.mkdtemp(prefix="pl-ray-"))
    enc = EncoderSettings(model=str(encoder)) if encoder else EncoderSettings(enabled=False)
    svc = Service(Settings(data_dir=data, encoder=enc, vlm=VlmSettings(backend="none", captions=False),
                           **(stores or {})))
    try:
        t, c = time.perf_counter(), time.process_time()
        report = svc.ingest(files, workers=workers, ray=ray)
        dt = time.perf_counter() - t
        if cpu is not None:
            cpu.append(time.process_time() - c)
        assert all(f.status == "ingested" for f in report.files), report
        for f in report.files:  # a fresh schema/collection per run would be cleaner; removing is as good
            if f.doc_id:
                svc.ingestor.remove(f.doc_id)
        return dt, sum(f.pages for f in report.files)
    finally:
        svc.close()
        shutil.rmtree(data, ignore_errors=True)


def _shared(files: list[Path], cpus: int, pg_url: str) -> None:
    import subprocess

    from ingest import write
    from tests.conftest import own_schema

    server = subprocess.Popen([sys.executable, "-m", "tests.qdrant_rest"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    real_of = write.SharedStores.of
    try:
        assert server.stdout is not None
        with own_schema(pg_url, prefix="bench") as database_url:
            stores = {"database_url": database_url, "qdrant_url": server.stdout.readline().strip()}
            for who in ("driver", "workers"):
                write.SharedStores.of = (real_of if who == "workers"  # type: ignore[method-assign]
                                         else staticmethod(lambda _s, _c: None))
                cpu: list[float] = []
                dt, pages = _run(files, "auto", cpus, stores=stores, cpu=cpu)
                print(f"shared stores, {who:7s} write: {pages / dt:6.0f} pages/s ({dt:.2f} s); driver CPU "
                      f"{cpu[0] / pages * 1000:.2f} ms a page")
    finally:
        write.SharedStores.of = real_of  # type: ignore[method-assign]
        server.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--small", type=int, default=50)
    ap.add_argument("--encoder", choices=["b16", "tiny", "none"], default="none")
    ap.add_argument("--only-encoder", action="store_true", help="skip the runs without an encoder")
    ap.add_argument("--shared", metavar="POSTGRES_URL", help="also: octave.pdf into shared stores (see above)")
    args = ap.parse_args()
    import ray

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    print(f"Ray local cluster start: {time.perf_counter() - t:.1f} s ({args.cpus} CPUs)")
    sets = {"octave.pdf": [ROOT / "bench" / "out" / "octave.pdf"],
            "corpus (3 PDFs)": sorted((ROOT.parent / "shared" / "corpus" / "pdfs").glob("*.pdf")),
            f"{args.small} one-page PDFs": _small(Path(tempfile.mkdtemp()) / "small", args.small)}
    print(f"{'input':22s} {'local --workers ' + str(args.cpus):>24s} {'Ray':>22s}  Ray overhead per file")
    for name, files in ({} if args.only_encoder or args.shared else sets).items():
        if not all(f.exists() for f in files):
            print(f"{name}: missing (bash bench/corpus.sh)")
            continue
        _run(files[:1], "auto", args.cpus)  # warm the workers' imports, as a long-lived cluster has them
        local, pages = min(_run(files, None, args.cpus) for _ in range(2))
        on_ray, _ = min(_run(files, "auto", args.cpus) for _ in range(2))
        print(f"{name:22s} {pages / local:10.0f} pages/s {local:6.2f} s {pages / on_ray:8.0f} pages/s {on_ray:6.2f} s"
              f"  {(on_ray - local) / len(files) * 1000:7.1f} ms")
    if args.shared:
        _run(sets["octave.pdf"], "auto", args.cpus)  # warm the workers
        _shared(sets["octave.pdf"], args.cpus, args.shared)
    model = _encoder(args.encoder)
    if model is not None:
        files = sets["corpus (3 PDFs)"]
        _run(files[:1], "auto", args.cpus, model)  # warm: workers' imports, as a long-lived cluster has them
        local, pages = _run(files, None, args.cpus, model)
        on_ray, _ = _run(files, "auto", args.cpus, model)
        print(f"with SigLIP ({args.encoder}), corpus: local {pages / local:.1f} pages/s ({local:.1f} s), "
              f"Ray Data {pages / on_ray:.1f} pages/s ({on_ray:.1f} s)")
    ray.shutdown()


if __name__ == "__main__":
    main()
