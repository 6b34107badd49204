"""Free space on the data dir's disk, checked before each write: Qdrant Edge memory-maps its write-ahead-log
segments, so a write into a full disk is not an error but a SIGBUS that kills the process. A floor
(``ingest.min_free_mb``) keeps room for the log, and a file that would go below it fails alone with disk_full."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from schemas.errors import DiskFull

OPEN_FLOOR_MB = 64.0  # opening a Qdrant Edge shard maps a write-ahead-log segment (32 MB) even to read


def check_can_open(path: Path) -> None:
    """Raise DiskFull when the disk of ``path`` cannot take what opening the embedded vector store writes (it
    would crash the process with SIGBUS, not fail). Nothing is opened or written by this check."""
    free = shutil.disk_usage(path).free
    if free < OPEN_FLOOR_MB * 2**20:
        raise DiskFull(f"the disk of {path} has {free / 2**20:.1f} MB free; the embedded vector store needs "
                       f"{OPEN_FLOOR_MB:g} MB to open (its write-ahead log is mapped into memory). Free some space, "
                       "or move PAGELENS_DATA_DIR to a larger disk; nothing was changed")


def check_free(path: Path, floor_mb: float, need_bytes: int = 0) -> None:
    """Raise DiskFull when writing ``need_bytes`` more under ``path`` would leave less than ``floor_mb`` free."""
    if floor_mb <= 0 and need_bytes <= 0:
        return
    free = shutil.disk_usage(path).free
    if free - need_bytes < floor_mb * 2**20:
        raise DiskFull(f"the disk of {path} has {free / 2**20:.0f} MB free, and PageLens keeps "
                       f"{floor_mb:g} MB (PAGELENS_INGEST__MIN_FREE_MB) for its stores' logs"
                       + (f" beside this file's {need_bytes / 2**20:.1f} MB" if need_bytes else "")
                       + "; free some space (or move PAGELENS_DATA_DIR to a larger disk) and ingest it again")


def disk_full_from(e: OSError, path: Path) -> DiskFull | None:
    """The DiskFull an OSError stands for (no space, quota exceeded), else None."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"the disk of {path} is full ({e.strerror}); free some space (or move PAGELENS_DATA_DIR "
                        "to a larger disk) and ingest the file again")
    return None
