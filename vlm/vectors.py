"""One rule for the models' output vectors: rows scaled to unit length, float32 (what the vector store's cosine and
MaxSim scores assume)."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row of ``x`` (n, dim) divided by its L2 norm (a zero row stays zero), as float32."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)
