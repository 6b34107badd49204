"""What the VLM functions get for each page: the image at the model's input size, and the page's own words."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.wordtable import WordTable


@dataclass(frozen=True, eq=False)
class PageInput:
    """``image``: RGB uint8 (H, W, 3) at exactly the size the model sees (multiples of 28 inside the pixel
    budget, so Qwen2.5-VL pixel boxes map back exactly); ``words``: the page's words (BBox contract)."""

    doc_id: str
    page: int
    image: np.ndarray
    words: WordTable

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])
