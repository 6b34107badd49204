"""The ``patches`` stage: the late-interaction retriever's vectors of each page image (one row per pooled patch),
for the rerank, rendered from the stored file at the model's image budget and written into the pages' points
(``ingest.vector_stage``). Runs only when a reranker is configured (``PAGELENS_RERANK__MODEL``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

    def version(self, model_version: str, doc: Document) -> str:
        """The model, its pooling and image budget, and how the vectors are stored (a change recreates them)."""
        spec = self.spec()
        return f"{model_version}|{spec.datatype},{spec.quantization}"

    def describe(self, where: str, pages: int, docs: int) -> str:
        return (f"embedding the images of {pages} pages of {docs} documents for the rerank ({self.s.rerank.model}, "
                f"{where})")

    def unavailable(self, why: str | None) -> str:
        return f"Pages are not embedded for the rerank: {why}"

    def inputs(self, doc: Document, batch: Sequence[PageRecord]) -> list[Any]:
        """The stored file and the page: each page is rendered where the model runs (a Ray actor reads the file
        store, as the cluster's readers do)."""
        path = str(self.library.files.open_path(doc.doc_id))
        return [(path, r.page.page_no) for r in batch]

    @staticmethod
    def encode(model: LateInteractionEncoder, inputs: Sequence[Any]) -> list[np.ndarray]:
        return model.encode_pages([render_for_model(Path(path), page_no, max_pixels=model.max_pixels)
                                   for path, page_no in inputs])
