"""Source files, stored once and content-addressed: ``<files_dir>/<sha256[:2]>/<sha256>``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from schemas.errors import NotFound


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, doc_id: str) -> Path:
        return self.root / doc_id[:2] / doc_id

    def has(self, doc_id: str) -> bool:
        return self.path_of(doc_id).exists()

    def put(self, doc_id: str, source: Path) -> Path:
        """Copy ``source`` in under ``doc_id`` (atomic: temp file + rename); a no-op when already stored."""
        dest = self.path_of(doc_id)
        if dest.exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    def open_path(self, doc_id: str) -> Path:
        p = self.path_of(doc_id)
        if not p.exists():
            raise NotFound(f"the stored file of document {doc_id[:12]} is missing; re-ingest the original file")
        return p

    def delete(self, doc_id: str) -> None:
        self.path_of(doc_id).unlink(missing_ok=True)

    def doc_ids(self) -> set[str]:
        """Ids of every stored file (half-written ``.incoming-`` copies excluded)."""
        if not self.root.exists():
            return set()
        return {p.name for p in self.root.glob("*/*") if p.is_file() and not p.name.startswith(".")}

    def drop_incoming(self) -> int:
        """Delete half-written copies a killed process left behind. Returns how many."""
        stale = list(self.root.glob("*/.incoming-*")) if self.root.exists() else []
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)
