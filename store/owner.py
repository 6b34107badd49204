"""Who owns a data dir: one process at a time holds its embedded stores, and says where it serves them.

The claim is an exclusive ``flock`` on ``<data_dir>/owner.lock``, taken *before* any store is opened, so a
refused process never touches a file of a store another process holds (Qdrant Edge writes to its shard while
loading, even when it then finds the shard locked). A server that owns the data dir records where it listens,
and a token that lets the data dir's other shells act through it, in ``<data_dir>/owner.json`` (mode 0600:
only the user who owns the data dir can read it).

The lock file is never truncated or removed (removing it would let two processes lock two different files);
``flock`` is released by the kernel when the process ends, however it ends (``kill -9`` included).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import StoreLocked

LOCK_FILE = "owner.lock"
RECORD_FILE = "owner.json"


@dataclass(frozen=True)
class ServerRecord:
    """Where the process that owns a data dir serves its HTTP API, and the token its local shells use."""

    url: str
    token: str
    pid: int


class _Claim:
    """The process's one open, locked descriptor of a data dir's lock file, shared by its DataDirOwners."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0


_CLAIMS: dict[Path, _Claim] = {}  # resolved data dir -> this process's claim on it
_CLAIMS_LOCK = threading.Lock()


class DataDirOwner:
    """This process's claim on a data dir. ``claim`` it before opening the embedded stores; ``release`` after
    closing them. The claim excludes other processes; within one process it is shared (a second Service on the
    same data dir, say a catalog-only one, is not refused here; a second handle on the Qdrant Edge shard is,
    by ``store.qdrant_edge``)."""

    def __init__(self, data_dir: Path, key: Path) -> None:
        self.data_dir = data_dir
        self._key: Path | None = key
        self._advertised = False

    @classmethod
    def claim(cls, data_dir: Path) -> DataDirOwner:
        """Take the data dir. Raises StoreLocked (naming the holder's pid and, when it is a server, its URL) when
        another process holds it; the data dir is not touched then, beyond opening its lock file."""
        data_dir = Path(data_dir)
        key = data_dir.resolve()
        with _CLAIMS_LOCK:
            claim = _CLAIMS.get(key)
            if claim is None:
                claim = _Claim(_lock(data_dir))
                _CLAIMS[key] = claim
            claim.users += 1
        return cls(data_dir, key)

    @property
    def held(self) -> bool:
        return self._key is not None

    def advertise(self, url: str, token: str | None = None) -> ServerRecord:
        """Record that this process serves the data dir at ``url``, with ``token`` (default: a fresh one) for the
        local shells. Written atomically, readable by the data dir's owner only."""
        rec = ServerRecord(url=url.rstrip("/"), token=token or secrets.token_urlsafe(32), pid=os.getpid())
        path = self.data_dir / RECORD_FILE
        tmp = path.with_name(f".{RECORD_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": rec.url, "token": rec.token, "pid": rec.pid}, f)
        os.replace(tmp, path)
        self._advertised = True
        return rec

    def release(self) -> None:
        """Withdraw the server record (if this owner wrote it) and, with this process's last owner, let the data
        dir go."""
        if self._key is None:
            return
        if self._advertised:
            with contextlib.suppress(OSError):
                rec = _read_record(self.data_dir)
                if rec is not None and rec.pid == os.getpid():
                    (self.data_dir / RECORD_FILE).unlink()
            self._advertised = False
        with _CLAIMS_LOCK:
            claim = _CLAIMS[self._key]
            claim.users -= 1
            if claim.users == 0:
                del _CLAIMS[self._key]
                os.close(claim.fd)  # closing the only descriptor of the open file drops the flock
        self._key = None


def _lock(data_dir: Path) -> int:
    """An open descriptor of ``data_dir``'s lock file holding its exclusive flock, with this pid written in it.
    Raises StoreLocked when another process holds it."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        for attempt in range(3):  # another shell's look (``held_by_other``) holds a shared lock for a moment
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as e:
                if attempt == 2:
                    raise StoreLocked(_locked_message(data_dir)) from e
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def held_by_other(data_dir: Path) -> int | None:
    """The pid written by the process holding ``data_dir`` when one does, else None. Does not take the lock."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def running_server(data_dir: Path) -> ServerRecord | None:
    """The server that owns ``data_dir`` now, or None: its record is there and its pid holds the lock (a record
    left by a killed server is ignored)."""
    rec = _read_record(Path(data_dir))
    if rec is None:
        return None
    holder = held_by_other(Path(data_dir))
    return rec if holder == rec.pid else None


def _read_record(data_dir: Path) -> ServerRecord | None:
    try:
        raw = json.loads((data_dir / RECORD_FILE).read_text())
        return ServerRecord(url=str(raw["url"]), token=str(raw["token"]), pid=int(raw["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _locked_message(data_dir: Path) -> str:
    holder = held_by_other(data_dir)
    who = f"process {holder}" if holder and holder > 0 else "another process"
    rec = running_server(data_dir)
    where = f" (a PageLens server at {rec.url})" if rec is not None else " (UI, API or a batch job)"
    return (f"the data dir {data_dir} is open in another PageLens process: {who}{where}. Stop that process, or "
            "run several at once against a Qdrant server: set PAGELENS_QDRANT_URL.")
