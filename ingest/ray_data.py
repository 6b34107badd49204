"""Reading and SigLIP embedding as one Ray Data pipeline (``ingest --ray`` with an encoder).

    page ranges ──map_batches(read: tasks, 1 CPU each)──▶ one row per page (its words, its image as raw bytes)
                ──map_batches(embed: an actor pool holding SigLIP, num_gpus=1 per actor on a GPU cluster,
                              ``encoder.batch_size`` pages a batch)──▶ rows with the image vector, no image
                ──▶ the driver (streamed: ``iter_batches``)

Ray Data streams blocks between the stages under its own backpressure, so GPUs are fed while CPUs read, and the
page images never travel to the driver. The read stage runs the local readers' code under their limits
(``ray_readers._within_limits``: memory cap, in-task timer, the local error codes, one failure row per range); a
read stuck in native code, where the timer cannot fire, is ended by a native watchdog (``faulthandler``, which needs
no GIL) that exits the worker after ``HARD_STOP`` times the limit. A worker that dies is retried by Ray
(``MAX_RETRIES``); a range whose block still errors is skipped by Ray Data (``max_errored_blocks``) and reported
here as lost, so one crashing file fails alone. Ray is imported only in ``ingest/ray_*.py``."""

from __future__ import annotations

import faulthandler
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np

from ingest.reader import PageOut, ReadJob, ReadOptions
from ingest.write import SharedStores, Written
from schemas.errors import EmbedFailed, WorkerCrashed

WRITERS = 4  # writer actors with shared stores: enough to keep a server busy from one pipeline

Range = tuple[ReadJob, int, int]  # a file's pages [start, stop)


KV_NAMESPACE = "pagelens"


def _first_start(run: str, r: int) -> float:
    """When range ``r`` of run ``run`` was first started, on any node (now, if this is its first try): kept in the
    cluster's key-value store, so a try after the watchdog ended the last one knows the range's time is spent."""
    import time

    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_put

    key, now = f"{run}:{r}", time.time()
    if not _internal_kv_put(key, str(now), overwrite=False, namespace=KV_NAMESPACE):  # True: it was there
        return now
    return float(_internal_kv_get(key, namespace=KV_NAMESPACE))


def _read_stage(batch: dict[str, np.ndarray], opts: ReadOptions, timeout_s: float, hard_stop_s: float,
                run: str) -> dict[str, list[Any]]:
    """Ray Data UDF: each row of ``batch`` is a page range → one row per page read (``kind`` "page") or one row
    for the range ("failed": the pickled (code, message); "empty": a file without pages)."""
    import time

    from ingest.ray_readers import _timeout, _within_limits
    from ingest.reader import read_range

    out: dict[str, list[Any]] = {"r": [], "n": [], "kind": [], "page": [], "image": [], "h": [], "w": []}

    def row(r: int, n: int, kind: str, page: bytes, image: bytes = b"", h: int = 0, w: int = 0) -> None:
        for key, v in zip(out, (r, n, kind, page, image, h, w), strict=True):
            out[key].append(v)

    for r, spec in zip(batch["r"], batch["spec"], strict=True):
        job, start, stop = pickle.loads(spec)
        if time.time() - _first_start(run, int(r)) > hard_stop_s:  # an earlier try was ended by the watchdog
            row(int(r), 0, "failed", pickle.dumps(_timeout(job, timeout_s)))
            continue
        faulthandler.dump_traceback_later(hard_stop_s, exit=True)
        try:
            kind, payload = _within_limits("pages", partial(read_range, job, opts, start, stop), job, opts,
                                           timeout_s)
        finally:
            faulthandler.cancel_dump_traceback_later()
        if kind == "failed":
            row(int(r), 0, "failed", pickle.dumps(payload))
            continue
        if not payload:
            row(int(r), 0, "empty", b"")
        for p in payload:
            image, p.image = p.image, None
            h, w = (image.shape[0], image.shape[1]) if image is not None else (0, 0)
            row(int(r), len(payload), "page", pickle.dumps(p),
                np.ascontiguousarray(image).tobytes() if image is not None else b"", h, w)
    return out


class _EmbedStage:
    """Ray Data UDF (an actor pool): holds the SigLIP encoder; adds each page's image vector (float32 bytes) and
    drops its image."""

    def __init__(self, settings: Any) -> None:
        from vlm.siglip import load_encoder

        self.encoder = load_encoder(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        out = {key: list(batch[key]) for key in ("r", "n", "kind", "page")}
        rows = [i for i, h in enumerate(batch["h"]) if h > 0]
        out["vector"] = [b""] * len(batch["h"])
        if rows:
            images = [np.frombuffer(batch["image"][i], dtype=np.uint8).reshape(int(batch["h"][i]),
                                                                                 int(batch["w"][i]), 3)
                      for i in rows]
            try:
                vectors = self.encoder.encode_images(images)
            except Exception as e:  # e.g. out of GPU memory: these pages' files fail, with what to do
                err = EmbedFailed(f"the image encoder failed on the Ray cluster ({e.__class__.__name__}: "
                                  f"{str(e)[:200]}); lower PAGELENS_ENCODER__BATCH_SIZE, or ingest without --ray")
                _fail_rows(out, rows, (err.code, err.message))
                return out
            for i, v in zip(rows, vectors, strict=True):
                out["vector"][i] = np.asarray(v, dtype=np.float32).tobytes()
        return out


class _WriteStage:
    """Ray Data UDF (an actor pool, ``WRITERS`` of them: "many writers"): writes the freshly read pages of each batch
    into the shared stores (``ingest.write.SharedStores``), one write per page range in the batch, and passes on,
    instead of the pages, what the driver needs to know: the first row of each write carries its ``Written`` (or
    the write's failure), the others only count towards their range. Pages of other modes pass through."""

    def __init__(self, stores: SharedStores, jobs: dict[int, ReadJob]) -> None:
        self.stores = stores
        self.jobs = jobs  # range index → its file's job

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from ingest.ray_readers import write_here

        out = {key: list(batch[key]) for key in ("r", "n", "kind", "page", "vector")}
        by_range: dict[int, list[int]] = {}
        for i, (r, kind) in enumerate(zip(batch["r"], batch["kind"], strict=True)):
            if kind == "page" and self.jobs[int(r)].mode == "full":
                by_range.setdefault(int(r), []).append(i)
        for r, rows in by_range.items():
            kind, payload = write_here(self.stores, self.jobs[r], [_page(batch["page"][i], batch["vector"][i])
                                                                    for i in rows])
            out["kind"][rows[0]], out["page"][rows[0]] = kind, pickle.dumps(payload)  # "written" or "failed"
            for i in rows:
                out["vector"][i] = b""
                if i != rows[0]:
                    out["kind"][i], out["page"][i] = "counted", b""
        return out


def _fail_rows(out: dict[str, list[Any]], rows: list[int], failure: tuple[str, str]) -> None:
    """Turn ``rows`` of a batch into one "failed" row per page range (carrying ``failure``) and "counted" rows."""
    seen: set[int] = set()
    for i in rows:
        r = int(out["r"][i])
        out["kind"][i], out["page"][i] = ("counted", b"") if r in seen else ("failed", pickle.dumps(failure))
        seen.add(r)


def _page(page: bytes, vector: bytes) -> PageOut:
    p: PageOut = pickle.loads(page)
    if vector:
        p.image_vector = np.frombuffer(vector, dtype=np.float32).tolist()
    return p


def actor_pool(gpus: int, actors: int, actor_cpus: int) -> dict[str, Any]:
    """``map_batches`` options of a model's actor pool: one actor per GPU (``num_gpus=1`` each) on a GPU cluster,
    else CPU actors of ``actor_cpus`` each, scaled from one to ``actors``."""
    import ray.data

    return {"compute": (ray.data.ActorPoolStrategy(size=actors) if gpus
                        else ray.data.ActorPoolStrategy(min_size=1, max_size=actors)),
            "num_gpus": 1 if gpus else 0, "num_cpus": 0 if gpus else actor_cpus}


@contextmanager
def quiet_pipeline(blocks: int) -> Iterator[None]:
    """Ray Data set up for one of our pipelines over ``blocks`` blocks, restored after: an erroring block fails
    its own item, not the run (``max_errored_blocks``); no progress bars or per-run INFO lines (the CLI shows its
    own progress)."""
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    quiet = logging.getLogger("ray.data")
    saved = ctx.max_errored_blocks, ctx.enable_progress_bars, quiet.level
    ctx.max_errored_blocks, ctx.enable_progress_bars = blocks, False
    quiet.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ctx.max_errored_blocks, ctx.enable_progress_bars, _ = saved
        quiet.setLevel(saved[2])


def read_and_embed(ranges: Sequence[Range], opts: ReadOptions, timeout_s: float, hard_stop_s: float,
                   encoder: Any, actors: int, gpus: int, max_retries: int, writers: SharedStores | None = None,
                   actor_cpus: int = 1) -> Iterator[tuple[int, str, Any]]:
    """``_read_and_embed`` with Ray Data set up for it (``quiet_pipeline``: a crashing file fails alone)."""
    with quiet_pipeline(len(ranges)):
        yield from _read_and_embed(ranges, opts, timeout_s, hard_stop_s, encoder, actors, gpus, max_retries,
                                   writers, actor_cpus)


def _read_and_embed(ranges: Sequence[Range], opts: ReadOptions, timeout_s: float, hard_stop_s: float,
                    encoder: Any, actors: int, gpus: int, max_retries: int, writers: SharedStores | None,
                    actor_cpus: int) -> Iterator[tuple[int, str, Any]]:
    """Read and embed ``ranges`` on the cluster. Yields, per range as soon as all of it arrived,
    ``(index, "pages", list[PageOut])`` (each with its ``image_vector``, sorted by page) — or, with ``writers``,
    ``(index, "written", Written)`` once a pool of writer actors wrote them into the shared stores —
    ``(index, "failed", (code, message))``, or — for ranges whose task never succeeded (its worker died every try)
    or when the whole pipeline failed — ``(index, "lost", why)``."""
    import logging
    import uuid
    import warnings

    import ray.data
    from ray.experimental.internal_kv import _internal_kv_del

    items = [{"r": k, "spec": pickle.dumps(rng)} for k, rng in enumerate(ranges)]
    run = uuid.uuid4().hex
    try:
        with warnings.catch_warnings():  # max_retries has no named parameter yet (Ray 2.60 deprecates the kwargs)
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = (ray.data.from_items(items, override_num_blocks=max(1, len(items)))
                  .map_batches(_read_stage, batch_size=1, batch_format="numpy",  # type: ignore[arg-type]  # (fn_kwargs)
                               fn_kwargs={"opts": opts, "timeout_s": timeout_s, "hard_stop_s": hard_stop_s,
                                          "run": run},
                               num_cpus=1, max_retries=max_retries)  # Ray Data's default retries forever
                  .map_batches(_EmbedStage, batch_size=encoder.batch_size, batch_format="numpy",
                               fn_constructor_kwargs={"settings": encoder},
                               **actor_pool(gpus, actors, actor_cpus),
                               # a batch that kills its actor every time fails its files, not the run forever
                               max_restarts=max_retries, max_task_retries=max_retries))
            if writers is not None:  # I/O-bound: no CPU reserved, so they never starve the readers
                ds = ds.map_batches(_WriteStage, batch_size=opts.batch_pages, batch_format="numpy",
                                    fn_constructor_kwargs={"stores": writers,
                                                           "jobs": {k: rng[0] for k, rng in enumerate(ranges)}},
                                    compute=ray.data.ActorPoolStrategy(size=WRITERS), num_cpus=0,
                                    max_restarts=max_retries, max_task_retries=max_retries)
        arrived: dict[int, list[PageOut]] = {}
        done_by_writers: dict[int, list[Written]] = {}
        finished: set[int] = set()
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for r, n, kind, page, vector in zip(batch["r"], batch["n"], batch["kind"], batch["page"],
                                                    batch["vector"], strict=True):
                    r = int(r)
                    if r in finished:  # failed already: what else of it arrives is dropped
                        continue
                    if kind == "failed":
                        finished.add(r)
                        yield r, "failed", pickle.loads(page)
                        continue
                    if kind == "empty":
                        finished.add(r)
                        yield r, "pages", []
                        continue
                    if kind in ("written", "counted"):
                        w = done_by_writers.setdefault(r, [])
                        w.append(pickle.loads(page) if kind == "written" else Written())
                        if len(w) == int(n) and r not in finished:
                            finished.add(r)
                            total = Written()
                            for one in done_by_writers.pop(r):
                                total.add(one)
                            yield r, "written", total
                        continue
                    p = _page(page, vector)
                    got = arrived.setdefault(r, [])
                    got.append(p)
                    if len(got) == int(n):
                        finished.add(r)
                        yield r, "pages", sorted(arrived.pop(r), key=lambda q: q.page_no)
            broken = None
        except Exception as e:  # the pipeline itself failed (e.g. the encoder actors could not start)
            broken = WorkerCrashed(f"the Ray Data pipeline failed ({e.__class__.__name__}: {str(e)[:300]}); nothing "
                                   "says the file is at fault: run the ingest again, or without --ray")
        for r in range(len(ranges)):
            if r not in finished:  # its task's worker died on every try (or the pipeline failed)
                yield (r, "lost", "its reading task failed on every try") if broken is None else (
                    r, "failed", (broken.code, broken.message))
    finally:
        try:
            _internal_kv_del(f"{run}:", del_by_prefix=True, namespace=KV_NAMESPACE)
        except Exception as e:  # the cluster went away: its key-value store with it
            logging.getLogger(__name__).debug("Ray KV cleanup skipped: %s", e)
