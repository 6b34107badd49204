"""The vector stages on a Ray cluster (``ingest --ray``): the text encoder's and the late-interaction reranker's
vectors made by an actor pool beside the readers and SigLIP's, instead of by the driver.

    batches of pages (the stage's ``inputs``: page texts, or (stored file, page) to render)
        ──map_batches(an actor pool holding the stage's model: one actor per GPU, num_gpus=1 each; on a CPU-only
                      cluster actors of up to 4 CPUs, scaled from one)──▶ (rows, dim) float32 arrays per page
        ──▶ the driver (streamed), which writes them into the pages' points (``ingest.vector_stage``)

Each actor loads the model once through its own ``Models`` (the same loader, the same reasons when it cannot); the
driver loads nothing: what it must know first (the model's version and vector size) comes from one task on the
cluster (``describe``). A batch whose actor dies is retried (``MAX_RETRIES``); one that still fails, or raises,
leaves its document pending with the reason, and the others go on. Ray is imported only in ``ingest/ray_*.py``."""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ingest.ray_data import actor_pool, quiet_pipeline
from ingest.ray_readers import MAX_RETRIES, actor_shape, connect
from ingest.vector_stage import About, VectorStage
from schemas.errors import EmbedFailed, PageLensError
from schemas.settings import Settings

log = logging.getLogger(__name__)

Stage = type[VectorStage[Any]]


def _failure(e: Exception, stage: Stage) -> str:
    if isinstance(e, PageLensError):
        return e.message
    return EmbedFailed(f"{stage.LABEL} failed on the Ray cluster ({e.__class__.__name__}: {str(e)[:200]}); lower "
                       "the stage's PAGELENS_…__BATCH_SIZE, or ingest without --ray").message


def _describe(stage: Stage, settings: Settings) -> tuple[About | None, str | None]:
    """On the cluster: load the stage's model once and say what it makes, or why it cannot load."""
    try:
        return About.of(stage.load(settings)), None
    except PageLensError as e:
        return None, e.message


class _VectorActor:
    """Ray Data UDF (an actor pool): holds one stage's model; each row is one batch of pages (``inputs``, pickled),
    answered with its vectors (pickled float32 arrays) or why not."""

    def __init__(self, stage: Stage, settings: Settings) -> None:
        self.stage = stage
        self.model: Any = None
        self.error: str | None = None
        try:
            self.model = stage.load(settings)
        except PageLensError as e:  # every batch this actor gets fails with the reason
            self.error = e.message

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"key": [], "vectors": [], "why": []}
        for key, spec in zip(batch["key"], batch["inputs"], strict=True):
            vectors, why = None, self.error
            if why is None:
                try:
                    vectors = pickle.dumps([np.asarray(v, dtype=np.float32)
                                            for v in self.stage.encode(self.model, pickle.loads(spec))])
                except Exception as e:  # this batch's document stays pending; the pool goes on
                    why = _failure(e, self.stage)
            out["key"].append(int(key))
            out["vectors"].append(vectors or b"")
            out["why"].append(why or "")
        return out


def _models_only(settings: Settings) -> Settings:
    """What an actor needs to load the models: their groups, not the data dir, keys or store URLs."""
    return Settings.model_construct(encoder=settings.encoder, text_encoder=settings.text_encoder,
                                    rerank=settings.rerank)


class RayEncoders:
    """The vector stages' models on the Ray cluster at ``address`` (joined on first use: a run with nothing to
    embed starts no cluster)."""

    def __init__(self, address: str, actors: int | None = None) -> None:
        self.address = address
        self.actors = actors
        self._shape: tuple[int, int, int] | None = None  # (gpus, actors, cpus per actor)

    def _pool(self) -> tuple[int, int, int]:
        if self._shape is None:
            connect(self.address)
            self._shape = actor_shape(self.actors)  # as SigLIP's actors
        return self._shape

    def describe(self, stage: Stage, settings: Settings) -> tuple[About | None, str | None]:
        """The stage's model as the cluster loads it: (what it makes, None) or (None, why it cannot load)."""
        import ray

        gpus, _, actor_cpus = self._pool()
        # max_calls=1: its worker exits after it, so no pooled worker is left holding torch and a model (a read
        # task given that worker later would run its memory cap over them, and its OCR fail to load)
        task = ray.remote(max_calls=1)(_describe).options(num_gpus=1 if gpus else 0,
                                                          num_cpus=0 if gpus else actor_cpus,
                                                          max_retries=MAX_RETRIES)
        try:
            return ray.get(task.remote(stage, _models_only(settings)))
        except ray.exceptions.RayError as e:
            return None, f"the Ray cluster could not load it ({e.__class__.__name__}: {str(e)[:200]})"

    def embed(self, stage: Stage, settings: Settings,
              items: Sequence[tuple[int, bytes]]) -> Iterator[tuple[int, list[np.ndarray] | None, str | None]]:
        """``items`` (key, pickled inputs of one batch) → (key, its vectors, None) as each batch is done, or
        (key, None, why) for a batch that failed or was lost."""
        if not items:
            return
        import ray.data

        gpus, actors, actor_cpus = self._pool()
        seen: set[int] = set()
        broken: str | None = None
        with quiet_pipeline(len(items)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ds = (ray.data.from_items([{"key": k, "inputs": spec} for k, spec in items],
                                          override_num_blocks=max(1, min(len(items), 4 * actors)))
                      .map_batches(_VectorActor, batch_size=1, batch_format="numpy",
                                   fn_constructor_kwargs={"stage": stage, "settings": _models_only(settings)},
                                   **actor_pool(gpus, actors, actor_cpus),
                                   max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES))
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for key, vectors, why in zip(batch["key"], batch["vectors"], batch["why"], strict=True):
                        seen.add(int(key))
                        yield (int(key), None, str(why)) if why else (int(key), pickle.loads(vectors), None)
            except Exception as e:  # the pipeline itself failed (e.g. the actors could not start)
                broken = f"the Ray Data pipeline failed ({e.__class__.__name__}: {str(e)[:300]}); run the ingest again"
        for key, _ in items:
            if key not in seen:  # its actor died on every try, or the pipeline failed
                yield key, None, broken or "its batch was lost on the Ray cluster (the actor died on every try)"
