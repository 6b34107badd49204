"""Whether a store's files are still the ones a process opened: a catalog file replaced, or the vector store's
folder deleted, under a running server goes unnoticed by the open handles (they keep the old inode, and Qdrant
Edge works from its maps) until the data is lost at the next start. ``/health`` asks here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class OnDisk:
    """The identity (device, inode) of ``path`` when it was opened."""

    path: Path
    dev: int
    ino: int
    sqlite: bool = False

    @classmethod
    def of(cls, path: Path, *, sqlite: bool = False) -> OnDisk | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(Path(path), st.st_dev, st.st_ino, sqlite)

    def problem(self) -> str | None:
        """Why the files are not the ones opened (gone, replaced, not a database any more), else None."""
        try:
            st = os.stat(self.path)
        except OSError:
            return f"{self.path.name} is gone from the data dir (deleted under the running process)"
        if (st.st_dev, st.st_ino) != (self.dev, self.ino):
            return f"{self.path.name} was replaced under the running process; restart it on the data dir's files"
        if self.sqlite:
            try:
                with self.path.open("rb") as f:
                    head = f.read(len(SQLITE_HEADER))
            except OSError as e:
                return f"{self.path.name} cannot be read ({e.strerror})"
            if head != SQLITE_HEADER:
                return f"{self.path.name} is no longer an SQLite database (overwritten)"
        return None
