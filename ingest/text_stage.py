"""The ``text`` stage: the text encoder's vectors of each page's words and caption (``words``, one row per chunk),
written into the pages' points from the catalog (``ingest.vector_stage``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ingest.vector_stage import VectorStage
from schemas.documents import Document
from store.catalog import PageRecord
from vlm.runtime import ModelName
from vlm.text_encoder import TextEncoder


def page_text(rec: PageRecord) -> str:
    """What the text encoder reads of a page: its words in reading order, then its caption."""
    words = " ".join(rec.table.texts)
    return f"{words}\n{rec.page.caption}" if rec.page.caption else words


class TextEmbedder(VectorStage[TextEncoder]):
    STAGE = "text"
    VECTOR = "words"
    MODEL: ModelName = "text_encoder"
    LABEL = "embedding words"

    def enabled(self) -> bool:
        return self.s.text_encoder.enabled

    def version(self, model_version: str, doc: Document) -> str:
        """The encoder and its chunking, and the caption stage the text included (a new caption re-embeds)."""
        return f"{model_version}|caption={doc.stages.get('caption', '')}"

    def describe(self, where: str, pages: int, docs: int) -> str:
        return f"embedding the words of {pages} pages of {docs} documents ({self.s.text_encoder.model}, {where})"

    def unavailable(self, why: str | None) -> str:
        return f"Page words are not embedded: {why}"

    def inputs(self, doc: Document, batch: Sequence[PageRecord]) -> list[Any]:
        return [page_text(r) for r in batch]

    @staticmethod
    def encode(model: TextEncoder, inputs: Sequence[Any]) -> list[np.ndarray]:
        return model.encode_pages(list(inputs))
