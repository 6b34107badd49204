"""The reliability diagram of extraction confidences (PNG, drawn with PyMuPDF: no plotting library needed), from
``grounding.calibration.reliability`` (accuracy per confidence bucket, ECE). A well-calibrated 0.9 is right nine
times in ten: its bar reaches the diagonal."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reliability_png(cal: dict[str, Any], path: Path, title: str = "extraction confidence") -> Path:
    """Draw the reliability diagram of ``grounding.calibration.reliability(...)`` to ``path`` (PNG)."""
    from store.mupdf import pymupdf

    size, margin = 400.0, 50.0
    doc = pymupdf.open()
    page = doc.new_page(width=size + 2 * margin, height=size + 2 * margin + 20)
    x0, y1 = margin, margin + 20 + size  # plot origin (bottom-left)

    def pt(x: float, y: float, dx: float = 0.0, dy: float = 0.0) -> pymupdf.Point:
        return pymupdf.Point(x0 + x * size + dx, y1 - y * size + dy)

    page.insert_text((margin, 30), f"{title}: reliability (ECE {cal['ece']:.3f}, n={cal['n']})", fontsize=11)
    for r in cal["buckets"]:
        if not r["n"]:
            continue
        bar = pymupdf.Rect(pt(r["lo"], r["accuracy"]), pt(r["hi"], 0))
        page.draw_rect(bar, color=(0.15, 0.39, 0.92), fill=(0.58, 0.72, 0.98), width=0.8)
        page.insert_text(pt(r["lo"], 0, 3, -4), str(r["n"]), fontsize=7, color=(0.1, 0.1, 0.3))
    page.draw_line(pt(0, 0), pt(1, 1), color=(0.86, 0.15, 0.15), width=1, dashes="[4] 0")
    page.draw_rect(pymupdf.Rect(pt(0, 1), pt(1, 0)), color=(0, 0, 0), width=0.8)
    for t in range(0, 11, 2):
        v = t / 10
        page.insert_text(pt(v, 0, -6, 14), f"{v:.1f}", fontsize=8)
        page.insert_text(pt(0, v, -26, 3), f"{v:.1f}", fontsize=8)
    page.insert_text(pt(0.35, 0, 0, 30), "confidence (bucket)", fontsize=9)
    page.insert_text(pt(0, 0.4, -40, 0), "accuracy", fontsize=9, rotate=90)
    page.get_pixmap(dpi=144).save(str(path))
    return path
