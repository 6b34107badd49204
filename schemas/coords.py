"""The coordinate contract, and the one converter for each source space.

A ``BBox`` is ``[x0, y0, x1, y1]`` in fractions 0–1 of the page *as displayed* (rotation applied), origin
top-left, ``x0 < x1`` and ``y0 < y1``. Pages keep their displayed width/height in PDF points; points and
pixels are derived from the fraction and those sizes, never stored twice.

Source spaces (one function each, all pure math; nothing here imports PyMuPDF):
- PyMuPDF words/rects: points, top-left, *unrotated* page → ``bbox_from_points`` with the page's
  ``rotation_matrix`` and displayed size.
- OCR boxes: pixels of the rendered (displayed) image → ``bbox_from_pixels``.
- Qwen2.5-VL ``bbox_2d``: absolute pixels of the resized model input → ``bbox_from_qwen25``.
- Qwen2-VL / Qwen3-VL: 0–1000 relative → ``bbox_from_rel1000``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator
from pydantic.config import JsonDict

if TYPE_CHECKING:  # numpy is imported by the array converters only: read-only commands start faster
    import numpy as np

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
# A 2x3 affine matrix as PyMuPDF writes it: (a, b, c, d, e, f) maps (x, y) -> (a*x + c*y + e, b*x + d*y + f).
Matrix = tuple[float, float, float, float, float, float]

_EPS = 1e-6
def _as_list_schema(schema: JsonDict) -> None:
    """BBox's JSON Schema is the list it is written as."""
    schema.clear()
    schema.update(_LIST_SCHEMA)


_LIST_SCHEMA: JsonDict = {"type": "array", "items": {"type": "number", "minimum": 0.0, "maximum": 1.0}, "minItems": 4,
                "maxItems": 4, "title": "BBox", "description": "[x0, y0, x1, y1]: fractions of the displayed page, "
                "origin top-left, x0 < x1, y0 < y1"}


class BBox(BaseModel):
    """Page box in displayed-page fractions, origin top-left. Validated: inside [0, 1], x0 < x1, y0 < y1.

    One shape everywhere it leaves the process: ``[x0, y0, x1, y1]`` (JSON, JSONL, the API, the CLI); an object
    with those keys is read too (extractions stored by older versions)."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_as_list_schema)

    x0: Fraction
    y0: Fraction
    x1: Fraction
    y1: Fraction

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: object) -> object:
        if isinstance(data, list | tuple):
            if len(data) != 4:
                raise ValueError(f"a bbox has 4 numbers [x0, y0, x1, y1], got {len(data)}")
            return {"x0": data[0], "y0": data[1], "x1": data[2], "y1": data[3]}
        return data

    @model_serializer(mode="plain")
    def _as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]

    @model_validator(mode="after")
    def _ordered(self) -> BBox:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError(f"bbox must have x0 < x1 and y0 < y1, got {self.as_list()}")
        return self

    @classmethod
    def of(cls, box: Sequence[float]) -> BBox:
        """Build from ``[x0, y0, x1, y1]`` fractions (validated, not clamped)."""
        if len(box) != 4:
            raise ValueError(f"a bbox has 4 numbers [x0, y0, x1, y1], got {len(box)}")
        return cls(x0=box[0], y0=box[1], x1=box[2], y1=box[3])

    @classmethod
    def clamped(cls, x0: float, y0: float, x1: float, y1: float) -> BBox | None:
        """Order, clip to the page and build; ``None`` when nothing of the box is on the page."""
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(1.0, x1), min(1.0, y1)
        if x1 - x0 < _EPS or y1 - y0 < _EPS:
            return None
        return cls(x0=x0, y0=y0, x1=x1, y1=y1)

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def iou(self, other: BBox) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)


def union(boxes: Iterable[BBox]) -> BBox:
    """Smallest box holding all ``boxes``. Raises ValueError on an empty input."""
    bs = list(boxes)
    if not bs:
        raise ValueError("union of no boxes")
    return BBox(x0=min(b.x0 for b in bs), y0=min(b.y0 for b in bs),
                x1=max(b.x1 for b in bs), y1=max(b.y1 for b in bs))


def boxes_from_points(rects: np.ndarray, rotation_matrix: Matrix, page_width: float,
                      page_height: float) -> tuple[np.ndarray, np.ndarray]:
    """Many PyMuPDF rects (n, 4) in points of the *unrotated* page → (boxes (n, 4) float32 in the BBox
    contract, clipped to the page; ``keep`` (n,) bool, False for boxes off the page or degenerate).

    ``rotation_matrix`` is ``page.rotation_matrix``; ``page_width``/``page_height`` the *displayed* size
    (``page.rect``)."""
    import numpy as np

    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    a, b, c, d, e, f = rotation_matrix
    xs = np.stack([a * r[:, i] + c * r[:, j] + e for i, j in ((0, 1), (2, 1), (0, 3), (2, 3))], axis=1)
    ys = np.stack([b * r[:, i] + d * r[:, j] + f for i, j in ((0, 1), (2, 1), (0, 3), (2, 3))], axis=1)
    out = np.stack([xs.min(1) / page_width, ys.min(1) / page_height,
                    xs.max(1) / page_width, ys.max(1) / page_height], axis=1)
    return _clip(out)


def _clip(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    out = np.clip(boxes, 0.0, 1.0).astype(np.float32)
    keep = ((out[:, 2] - out[:, 0]) > _EPS) & ((out[:, 3] - out[:, 1]) > _EPS)
    return out, keep


def bbox_from_points(rect: Sequence[float], rotation_matrix: Matrix, page_width: float,
                     page_height: float) -> BBox | None:
    """One PyMuPDF rect (points, unrotated page, top-left) → BBox, or None when off the page or degenerate.
    See ``boxes_from_points``."""
    import numpy as np

    boxes, keep = boxes_from_points(np.asarray([rect[:4]]), rotation_matrix, page_width, page_height)
    return BBox.of(boxes[0].astype(float).tolist()) if keep[0] else None


def bbox_to_points(box: BBox, page_width: float, page_height: float) -> tuple[float, float, float, float]:
    """BBox → displayed-page points ``(x0, y0, x1, y1)``."""
    return (box.x0 * page_width, box.y0 * page_height, box.x1 * page_width, box.y1 * page_height)


def boxes_from_pixels(boxes: np.ndarray, image_width: int, image_height: int) -> tuple[np.ndarray, np.ndarray]:
    """Many pixel boxes (n, 4) of a rendered displayed page → (BBox-contract boxes float32, keep mask)."""
    import numpy as np

    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scale = np.array([image_width, image_height, image_width, image_height], dtype=np.float64)
    return _clip(b / scale)


def bbox_from_pixels(box: Sequence[float], image_width: int, image_height: int) -> BBox | None:
    """Axis-aligned pixel box ``[x0, y0, x1, y1]`` of a rendered displayed page → BBox."""
    x0, y0, x1, y1 = box[:4]
    return BBox.clamped(x0 / image_width, y0 / image_height, x1 / image_width, y1 / image_height)


def bbox_from_quad(quad: Sequence[Sequence[float]], image_width: int, image_height: int) -> BBox | None:
    """OCR 4-point polygon (pixels) → the BBox enclosing it."""
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    return bbox_from_pixels([min(xs), min(ys), max(xs), max(ys)], image_width, image_height)


def bbox_to_pixels(box: BBox, image_width: int, image_height: int) -> tuple[int, int, int, int]:
    """BBox → integer pixel box of an image of that size (floor/ceil so the box is never shrunk)."""
    import math

    return (math.floor(box.x0 * image_width), math.floor(box.y0 * image_height),
            math.ceil(box.x1 * image_width), math.ceil(box.y1 * image_height))


def bbox_from_qwen25(box: Sequence[float], input_width: int, input_height: int) -> BBox | None:
    """Qwen2.5-VL ``bbox_2d`` (absolute pixels of the *resized model input*) → BBox.

    ``input_width``/``input_height`` are the size the image processor fed the model (after smart_resize),
    not the original image size.
    """
    return bbox_from_pixels(box, input_width, input_height)


def bbox_to_qwen25(box: BBox, input_width: int, input_height: int) -> list[int]:
    return [round(box.x0 * input_width), round(box.y0 * input_height),
            round(box.x1 * input_width), round(box.y1 * input_height)]


def bbox_from_rel1000(box: Sequence[float]) -> BBox | None:
    """Qwen2-VL / Qwen3-VL box, 0–1000 relative → BBox."""
    return BBox.clamped(box[0] / 1000, box[1] / 1000, box[2] / 1000, box[3] / 1000)


def bbox_to_rel1000(box: BBox) -> list[int]:
    return [round(v * 1000) for v in box.as_list()]


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 14 * 14 * 4 * 1280) -> tuple[int, int]:
    """Qwen2-VL/2.5-VL's resize rule: (h, w) as multiples of ``factor`` with min ≤ h·w ≤ max pixels.

    Matches ``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize``; used to render pages at
    a size the processor keeps unchanged, so model pixels map to the page exactly.
    """
    import math

    if max(height, width) / max(1, min(height, width)) > 200:
        raise ValueError("aspect ratio over 200 cannot be fed to a Qwen-VL model")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
