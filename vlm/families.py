"""VLM families and their box spaces: how a model writes a box, and the one converter into the BBox contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from schemas.coords import BBox, bbox_from_qwen25, bbox_from_rel1000

Family = Literal["qwen2.5-vl", "qwen2-vl", "qwen3-vl"]
FAMILIES: tuple[Family, ...] = ("qwen2.5-vl", "qwen2-vl", "qwen3-vl")


def detect_family(name_or_type: str) -> Family:
    """Family from a model id, directory name or HF ``model_type`` (default: Qwen2.5-VL's pixel space)."""
    s = name_or_type.lower().replace("_", ".").replace("-", ".")
    if "qwen3" in s:
        return "qwen3-vl"
    if "qwen2.5" in s or "qwen2.5.vl" in s:
        return "qwen2.5-vl"
    if "qwen2" in s:
        return "qwen2-vl"
    return "qwen2.5-vl"


def to_bbox(family: str, box: Sequence[float], input_width: int, input_height: int) -> BBox | None:
    """A model's box → BBox. Qwen2.5-VL: absolute pixels of the model input (``input_width``×``input_height``,
    the size after smart_resize); Qwen2-VL and Qwen3-VL: 0–1000 relative."""
    if len(box) != 4:
        return None
    if family == "qwen2.5-vl":
        return bbox_from_qwen25(box, input_width, input_height)
    return bbox_from_rel1000(box)


def box_instructions(family: str, input_width: int, input_height: int) -> str:
    """How to ask this family for boxes, in its native space."""
    if family == "qwen2.5-vl":
        return (f"Boxes are bbox_2d = [x1, y1, x2, y2] in absolute pixels of the page image "
                f"({input_width}x{input_height}), origin top-left.")
    return "Boxes are bbox_2d = [x1, y1, x2, y2] on a 0-1000 scale of the page image, origin top-left."


def box_bounds(family: str, input_width: int, input_height: int) -> int:
    """Largest coordinate value a box may hold (for bounded schemas)."""
    return max(input_width, input_height) if family == "qwen2.5-vl" else 1000
