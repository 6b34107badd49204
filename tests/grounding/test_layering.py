"""The verifier is on the floor below the pipelines: nothing in grounding/ imports vlm, app, store, ingest or
retrieval (it must stay usable, and testable, without any model or store)."""

from __future__ import annotations

import ast
from pathlib import Path

import grounding

ABOVE = ("vlm", "app", "store", "ingest", "retrieval")


def test_grounding_imports_nothing_above_it() -> None:
    root = Path(grounding.__file__).parent
    found = []
    for f in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{f.name}: {n}" for n in names if n.split(".")[0] in ABOVE]
    assert len(list(root.glob("*.py"))) >= 5 and not found, found
