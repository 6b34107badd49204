"""PyMuPDF, imported in one place, the way PageLens needs it — on the store's floor, so both the readers
(``ingest``) and the page renderers (``store.pages``) use it without an import running back up.

- onnxruntime's telemetry is off before any session exists (``quiet_onnxruntime``, called by the OCR before it
  builds its sessions; the environment switch set here is inherited by the readers): its Linux builds resolve and
  post to a Microsoft events endpoint. PageLens talks to no server the user did not configure.
- ``pymupdf.layout`` is not loaded: PyMuPDF imports it when installed (recent PyMuPDF installs it), and it builds
  onnxruntime layout models on import — 0.3 s in every process that reads PDFs, for a layout analysis PageLens
  does not use (its words come from the text layer and OCR, its reading order from MuPDF)."""

from __future__ import annotations

import os
import sys


def quiet_onnxruntime() -> None:
    """Telemetry off in onnxruntime (imports it: call it where sessions are about to be made)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError:
        return
    onnxruntime.disable_telemetry_events()


os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # read when onnxruntime starts; readers inherit it
sys.modules.setdefault("pymupdf.layout", None)  # type: ignore[arg-type]  # None in sys.modules: "not installed"
import pymupdf  # noqa: E402

__all__ = ["pymupdf"]
