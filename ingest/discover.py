"""Expand the paths a user gives into the files to ingest."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from schemas.errors import InputError


def discover(paths: Iterable[Path]) -> list[Path]:
    """Files under ``paths`` (folders recursively, hidden entries skipped), sorted, each once.

    Raises InputError for a path that does not exist."""
    out: dict[Path, None] = {}
    for p in paths:
        if not p.exists():
            raise InputError(f"{p} does not exist; give a PDF/image file or a folder")
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                    out[f] = None
        else:
            out[p] = None
    return list(out)
