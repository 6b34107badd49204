"""The late-interaction page retriever: ColQwen2 (and ColQwen2.5 checkpoints, which load through the same classes
with a Qwen2.5-VL config) or ColPali, through transformers' own classes (``ColQwen2ForRetrieval`` +
``ColQwen2Processor``, ``ColPaliForRetrieval`` + ``ColPaliProcessor``), from a hub id or a local dir in
transformers' format. A page becomes one L2-normalised vector per token of its image (its padding dropped),
pooled hierarchically — similar patches merged, about one in ``pool_factor`` kept, as colpali-engine's
``HierarchicalTokenPooler`` does (~98 % of the quality at a third of the vectors, by its authors' figures) — and a
question one vector per token; a page's score is MaxSim, the sum over the question's vectors of the best cosine
among the page's. Stored as the ``patches`` multivector; used only to rerank the hybrid query's candidates."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas.errors import ModelUnavailable
from schemas.settings import RerankSettings
from vlm import hub
from vlm.vectors import unit_rows

log = logging.getLogger(__name__)

HOW_TO_FIX = ("set PAGELENS_RERANK__MODEL to the hub id or local dir of a ColQwen2/ColPali checkpoint in "
              "transformers' format (e.g. vidore/colqwen2-v1.0-hf), or leave it empty to rerank nothing")
FAMILIES = {"colqwen2": ("ColQwen2ForRetrieval", "ColQwen2Processor"),
            "colpali": ("ColPaliForRetrieval", "ColPaliProcessor")}


def pool_rows(rows: np.ndarray, factor: int) -> np.ndarray:
    """Hierarchical token pooling: ``rows`` (n, dim), unit length, clustered by Ward linkage into ``n // factor``
    groups (at least 1), each group's mean renormalised. ``factor`` 1 (or a single row) keeps them as they are."""
    if factor <= 1 or len(rows) < 2:
        return rows
    from scipy.cluster.hierarchy import fcluster, linkage

    labels = fcluster(linkage(rows.astype(np.float64), method="ward"), t=max(1, len(rows) // factor),
                      criterion="maxclust")
    pooled = np.stack([rows[labels == c].mean(0) for c in np.unique(labels)])
    return unit_rows(pooled)


class LateInteractionEncoder:
    """A loaded ColQwen2/ColPali model. ``dim``: its vector size; ``version``: what produced a page's vectors
    (model, pooling, image budget)."""

    def __init__(self, settings: RerankSettings) -> None:
        source = hub.resolve(settings.model, "reranker", HOW_TO_FIX)
        try:
            import torch
            import transformers
            from transformers.utils import logging as hf_logging
        except ImportError as e:
            raise ModelUnavailable("the reranker needs torch and transformers: pip install 'pagelens[vlm]'") from e
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" \
            else settings.device
        bf16 = settings.precision == "bf16" or (settings.precision == "auto" and self.device == "cuda")
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        hf_logging.disable_progress_bar()
        t0 = time.perf_counter()
        try:
            config = transformers.AutoConfig.from_pretrained(source)
            if config.model_type not in FAMILIES:
                raise ModelUnavailable(f"reranker {settings.model} is a {config.model_type!r} model, not one of "
                                       f"{sorted(FAMILIES)}; {HOW_TO_FIX}")
            model_cls, processor_cls = (getattr(transformers, n) for n in FAMILIES[config.model_type])
            self.model = model_cls.from_pretrained(source, dtype=self.dtype).to(self.device).eval()
            self.processor = processor_cls.from_pretrained(source)
        except ModelUnavailable:
            raise
        except Exception as e:
            lines = str(e).strip().splitlines()
            raise ModelUnavailable(f"reranker {settings.model} could not be loaded ({e.__class__.__name__}: "
                                   f"{lines[0][:200] if lines else ''}); {HOW_TO_FIX}") from e
        self.family = config.model_type
        self.dim = int(config.embedding_dim)
        self.pool_factor = settings.pool_factor
        self.batch_size = settings.batch_size
        self.max_pixels = settings.max_pixels
        self.version = f"{settings.model}:pool{settings.pool_factor}@{settings.max_pixels}px"
        log.info("reranker %s (%s) loaded in %.1fs on %s (dim %d)", settings.model, self.family,
                 time.perf_counter() - t0, self.device, self.dim)

    def _rows(self, inputs: Any) -> list[np.ndarray]:
        """The model's vectors for a processed batch, one (tokens, dim) float32 array per item, padding dropped."""
        import torch

        inputs = inputs.to(self.device)
        with torch.inference_mode():
            emb = self.model(**inputs).embeddings
        mask = inputs["attention_mask"].bool().cpu().numpy()
        out = emb.float().cpu().numpy()
        return [unit_rows(e[m]) for e, m in zip(out, mask, strict=True)]

    def encode_pages(self, images: Sequence[np.ndarray], *, pool: bool = True,
                     overlap: bool | None = None) -> list[np.ndarray]:
        """Page images (RGB uint8 H×W×3) → one (rows, dim) array each, pooled unless ``pool=False``.

        ``overlap`` (default: on a GPU) keeps the model busy: the next batch is prepared by the processor and the
        last one pooled, each in its own thread, while the model runs (on a CPU they would only take its cores)."""
        from concurrent.futures import ThreadPoolExecutor

        from PIL import Image

        def prepare(batch: Sequence[np.ndarray]) -> Any:
            return self.processor(images=[Image.fromarray(np.asarray(im)) for im in batch], return_tensors="pt")

        def finish(rows: list[np.ndarray]) -> list[np.ndarray]:
            return [pool_rows(r, self.pool_factor) if pool else r for r in rows]

        batches = [images[s:s + self.batch_size] for s in range(0, len(images), self.batch_size)]
        if not (self.device != "cpu" if overlap is None else overlap) or len(batches) < 2:
            return [r for b in batches for r in finish(self._rows(prepare(b)))]
        with ThreadPoolExecutor(1) as before, ThreadPoolExecutor(1) as after:
            ahead = before.submit(prepare, batches[0])
            done = []
            for i in range(len(batches)):
                inputs = ahead.result()
                if i + 1 < len(batches):
                    ahead = before.submit(prepare, batches[i + 1])
                done.append(after.submit(finish, self._rows(inputs)))
            return [r for f in done for r in f.result()]

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Questions → one (tokens, dim) array each."""
        out: list[np.ndarray] = []
        for s in range(0, len(texts), self.batch_size):
            out.extend(self._rows(self.processor(text=list(texts[s:s + self.batch_size]), return_tensors="pt")))
        return out


def maxsim(query: np.ndarray, page: np.ndarray) -> float:
    """Late-interaction score of a page for a question: Σ over the question's rows of the best dot product."""
    return float((query @ page.T).max(axis=1).sum()) if len(page) else 0.0
