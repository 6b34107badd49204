"""The ``patches`` stage: the late-interaction retriever's vectors of each page image (one row per pooled patch),
for the rerank, rendered from the stored file at the model's image budget and written into the pages' points
(``ingest.vector_stage``). Runs only when a reranker is configured (``PAGELENS_RERANK__MODEL``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ingest.vector_stage import VectorStage
from schemas.documents import Document
from store.catalog import PageRecord
from store.pages import render_for_model
from store.vectors import RERANK_VECTOR, VectorSpec
from vlm.late_interaction import LateInteractionEncoder
from vlm.runtime import ModelName


class PatchEmbedder(VectorStage[LateInteractionEncoder]):
    STAGE = "patches"
    VECTOR = RERANK_VECTOR
    MODEL: ModelName = "reranker"
    LABEL = "embedding page patches"

    def enabled(self) -> bool:
        return self.s.rerank.enabled

    def spec(self) -> VectorSpec:
        return VectorSpec(datatype=self.s.rerank.storage, quantization=self.s.rerank.quantization, hnsw=False)

    def version(self, model: LateInteractionEncoder, doc: Document) -> str:
        """The model, its pooling and image budget, and how the vectors are stored (a change recreates them)."""
        spec = self.spec()
        return f"{model.version}|{spec.datatype},{spec.quantization}"

    def describe(self, model: LateInteractionEncoder, pages: int, docs: int) -> str:
        return (f"embedding the images of {pages} pages of {docs} documents for the rerank ({self.s.rerank.model}, "
                f"{model.device})")

    def unavailable(self, why: str | None) -> str:
        return f"Pages are not embedded for the rerank: {why}"

    def dim(self, model: LateInteractionEncoder) -> int:
        return model.dim

    def vectors(self, model: LateInteractionEncoder, doc: Document,
                batch: Sequence[PageRecord]) -> list[np.ndarray]:
        path = self.library.files.open_path(doc.doc_id)
        images = [render_for_model(path, r.page.page_no, max_pixels=model.max_pixels) for r in batch]
        return model.encode_pages(images)
