"""Expand the paths a user gives into the files to ingest."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from schemas.errors import InputError

log = logging.getLogger(__name__)


def walk_files(root: Path) -> Iterator[Path]:
    """Files under the folder ``root``, recursively, hidden entries skipped. Symlinked folders are followed;
    each real folder is read once (by its resolved path), so a link back up the tree cannot loop."""
    seen: set[Path] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = folder.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(folder.iterdir(), reverse=True)  # popped in name order
        except OSError as e:
            log.warning("skipping folder %s: %s", folder, e)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                stack.append(entry)
            elif entry.is_file():
                yield entry


def discover(paths: Iterable[Path]) -> list[Path]:
    """Files under ``paths`` (folders recursively, following symlinked folders, hidden entries skipped),
    sorted, each once.

    Raises InputError for a path that does not exist."""
    out: dict[Path, None] = {}
    for p in paths:
        if not p.exists():
            raise InputError(f"{p} does not exist; give a PDF/image file or a folder")
        if p.is_dir():
            out.update(dict.fromkeys(sorted(walk_files(p))))
        else:
            out[p] = None
    return list(out)
