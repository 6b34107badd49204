"""The write gate: one writer at a time over the stores, but a long ingest lets short writes (deletes) in
between its page batches, so a delete waits about one page batch behind an upload instead of the whole upload.

A short write names the document it touches; while the long writer is paused it may run unless the document is
one the ingest is writing (``busy``): that one waits until the ingest has finished, so it is never deleted half
way through (a half-written document with the rest of its pages arriving after the delete)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from types import TracebackType


class WriteGate:
    """A lock for the stores' writers. ``with gate:`` is a short write about everything (reconcile);
    ``gate.writing(doc_id)`` a short write about one document; ``gate.long_writing(busy)`` an ingest of the
    documents ``busy``, which calls the ``let_in`` it is given at points where it has nothing half-written."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False  # a writer is writing now
        self._paused: frozenset[str] | None = None  # a long writer is paused at a safe point; its busy documents
        self._waiting: list[str | None] = []  # short writers waiting, by the document each touches (None: all)

    def _may_enter(self, doc_id: str | None) -> bool:
        if self._held:
            return False
        return self._paused is None or (doc_id is not None and doc_id not in self._paused)

    def acquire(self, doc_id: str | None = None) -> None:
        with self._cond:
            self._waiting.append(doc_id)
            try:
                self._cond.wait_for(lambda: self._may_enter(doc_id))
            finally:
                self._waiting.remove(doc_id)
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.release()

    @contextmanager
    def writing(self, doc_id: str) -> Iterator[None]:
        """A short write about ``doc_id`` (e.g. its deletion)."""
        self.acquire(doc_id)
        try:
            yield
        finally:
            self.release()

    @contextmanager
    def long_writing(self, busy: Collection[str]) -> Iterator[Callable[[], None]]:
        """A long write (an ingest) of the documents ``busy``. Yields ``let_in()``: call it only where nothing is
        half-written; short writers about other documents that are waiting then run, one at a time, and it
        returns when they are done."""
        busy = frozenset(busy)
        with self._cond:
            self._cond.wait_for(lambda: not self._held and self._paused is None)
            self._held = True

        def eligible() -> bool:
            return any(d is not None and d not in busy for d in self._waiting)

        def let_in() -> None:
            with self._cond:
                if not eligible():
                    return
                self._held, self._paused = False, busy
                self._cond.notify_all()
                self._cond.wait_for(lambda: not self._held and not eligible())
                self._held, self._paused = True, None

        try:
            yield let_in
        finally:
            with self._cond:
                self._held, self._paused = False, None
                self._cond.notify_all()
