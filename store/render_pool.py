"""Page images for people, drawn in sandboxed processes: a bounded time and memory per render, and a cap on renders
in flight, so one hostile page (a JBIG2 region declaring 60000², a 26000² image, a million paths) costs its own
request and never the API's memory, its thread pool or the other pages' turn.

Each worker is a spawned process with an address-space cap (``ingest.worker_memory_mb``, as the page readers have)
rendering one page at a time with ``store.pages.render_png``. A render over ``server.render_timeout_s`` kills its
worker (a new one takes its place) and fails as ``render_failed``; with every worker busy, a request waits at most
``server.render_wait_s`` for one and then answers 503 ``busy`` with Retry-After (Busy)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from schemas.coords import BBox
from schemas.errors import Busy, PageLensError, RenderFailed, error_from

log = logging.getLogger(__name__)


def _worker(conn: Connection, memory_mb: int) -> None:
    """Render what ``conn`` asks, one page at a time, under an address-space cap."""
    import resource

    cap = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from store.pages import render_png

    conn.send(("ready",))  # imports done: a render's time bound starts with the render, not the start-up
    while True:
        try:
            req = conn.recv()
        except EOFError:
            return
        path, page, width, boxes, crop = req
        try:
            png = render_png(Path(path), page, width=width, boxes=[(BBox.of(b), s) for b, s in boxes],
                             crop=BBox.of(crop) if crop else None)
            conn.send(("ok", png))
        except PageLensError as e:
            conn.send(("error", e.code, e.message))
        except MemoryError:
            conn.send(("error", RenderFailed.code, f"page {page} needs more than the {memory_mb} MB a page render may "
                                                   "use (PAGELENS_INGEST__WORKER_MEMORY_MB)"))
        except Exception as e:  # a bug or a MuPDF failure costs this render only
            conn.send(("error", RenderFailed.code, f"page {page} cannot be drawn ({e.__class__.__name__})"))


START_TIMEOUT_S = 60.0  # a renderer's start-up (spawn, imports) on a busy machine


class _Slot:
    def __init__(self, ctx: Any, memory_mb: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, memory_mb), daemon=True, name="pagelens-render")
        self.proc.start()
        child.close()
        try:
            ready = self.conn.poll(START_TIMEOUT_S) and self.conn.recv() == ("ready",)
        except EOFError:
            ready = False
        if not ready:
            self.stop()
            raise RenderFailed("the page renderer did not start (see the server log); retry")

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class RenderPool:
    """``size`` sandboxed renderers, started on first use."""

    def __init__(self, *, size: int, timeout_s: float, wait_s: float, memory_mb: int) -> None:
        self.size, self.timeout_s, self.wait_s, self.memory_mb = size, timeout_s, wait_s, memory_mb
        self._ctx = mp.get_context("spawn")
        self._free: list[_Slot] = []
        self._started = 0
        self._cond = threading.Condition()
        self._closed = False

    def _take(self) -> _Slot:
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while True:
                if self._closed:
                    raise RenderFailed("the page renderer is shut down")
                if self._free:
                    return self._free.pop()
                if self._started < self.size:
                    self._started += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy(f"every page renderer is busy ({self.size} at once, "
                                               "PAGELENS_SERVER__RENDERS_IN_FLIGHT); retry shortly", retry_after_s=2)
                self._cond.wait(left)
        try:
            return _Slot(self._ctx, self.memory_mb)
        except BaseException:
            with self._cond:
                self._started -= 1
                self._cond.notify()
            raise

    def _give(self, slot: _Slot | None) -> None:
        with self._cond:
            if slot is None or self._closed:
                self._started -= 1
            else:
                self._free.append(slot)
            self._cond.notify()

    def png(self, path: Path, page: int, *, width: int, boxes: list[tuple[BBox, str]], crop: BBox | None) -> bytes:
        """What ``store.pages.render_png`` returns, drawn in a sandbox. Raises what it raises, RenderFailed on the
        time or memory bound, RateLimited when every renderer stays busy."""
        slot = self._take()
        try:
            slot.conn.send((str(path), page, width, [(b.as_list(), s) for b, s in boxes],
                            crop.as_list() if crop else None))
            if not slot.conn.poll(self.timeout_s):
                raise RenderFailed(f"page {page} took over {self.timeout_s:g} s to draw and was stopped (a malformed "
                                   "or hostile page); its words and search still work")
            try:
                reply = slot.conn.recv()
            except EOFError as e:  # the worker died (its memory cap, a MuPDF crash)
                raise RenderFailed(f"page {page} cannot be drawn: its renderer stopped (over the "
                                   f"{self.memory_mb} MB a render may use, or a crash in MuPDF)") from e
        except BaseException:  # a worker in an unknown state is never reused: a fresh one takes its place
            slot.stop()
            self._give(None)
            raise
        self._give(slot)
        if reply[0] == "ok":
            return bytes(reply[1])
        raise error_from(reply[1], reply[2])

    def close(self) -> None:
        with self._cond:
            self._closed = True
            slots, self._free = self._free, []
            self._cond.notify_all()
        for s in slots:
            s.stop()
