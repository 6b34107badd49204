"""The store is the floor the pipelines stand on: nothing in store/ imports ingest, retrieval, vlm or app, and
PyMuPDF is imported in one place (``store.mupdf``: layout models not loaded, onnxruntime's telemetry off) by every
product module that uses it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOVE = ("ingest", "retrieval", "vlm", "app")
PRODUCT = ("schemas", "grounding", "store", "ingest", "retrieval", "vlm", "app")


def _imports(f: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append(node.module or "")
    return out


def test_store_imports_nothing_above_it() -> None:
    files = sorted((ROOT / "store").glob("*.py"))
    found = [f"{f.name}: {n}" for f in files for n in _imports(f) if n.split(".")[0] in ABOVE]
    assert len(files) >= 10 and not found, found


def test_pymupdf_is_imported_only_through_store_mupdf() -> None:
    files = [f for pkg in PRODUCT for f in sorted((ROOT / pkg).rglob("*.py"))]
    direct = [str(f.relative_to(ROOT)) for f in files if f != ROOT / "store" / "mupdf.py"
              and any(n.split(".")[0] in ("pymupdf", "fitz") for n in _imports(f))]
    users = [f for f in files if "store.mupdf" in _imports(f)]
    assert not direct, f"import PyMuPDF as `from store.mupdf import pymupdf`: {direct}"
    assert len(users) >= 4  # the readers, the page renderers, the demo, the reliability plot
