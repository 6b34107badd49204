"""``pagelens serve``: the API under uvicorn, owning the data dir, hardened against slow and many clients."""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from app.api import create_app
from app.service import Service
from schemas.settings import Settings

log = logging.getLogger(__name__)


def local_url(host: str, port: int) -> str:
    """The URL the shells of this machine reach a server bound to ``host:port`` at (a wildcard bind: loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def guarded_h11(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for the request head: a client that sends its headers byte by byte
    (slowloris) is closed after ``header_timeout_s`` instead of holding a connection for ever. uvicorn has no such
    timeout of its own (its keep-alive timer only runs between requests)."""

    class GuardedH11(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline = self.loop.call_later(header_timeout_s, self._too_slow)

        def _too_slow(self) -> None:
            self._deadline = None
            if self.cycle is None and not self.transport.is_closing():  # no whole request head yet
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and self._deadline is not None:  # a request head arrived in time
                self._deadline.cancel()
                self._deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

    return GuardedH11


def _raise_fd_limit(want: int) -> None:
    """Room for ``want`` connections beside the stores' own files: the soft descriptor limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, want + 256)) if hard != resource.RLIM_INFINITY else max(soft, want + 256)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    srv = settings.server
    return {"http": guarded_h11(srv.header_timeout_s), "limit_concurrency": srv.max_connections,
            "timeout_keep_alive": srv.keep_alive_s, "h11_max_incomplete_event_size": 64 * 1024}


def serve_data_dir(settings: Settings, *, host: str, port: int) -> None:
    """``pagelens serve``: open the stores (refused with StoreLocked when another process owns the data dir), record
    where this server listens so the data dir's other shells run through it (``store.owner``), serve until
    stopped. The record goes with the server."""
    import secrets

    import uvicorn

    svc = Service(settings)
    token = secrets.token_urlsafe(32)

    class Listening(uvicorn.Server):
        """Advertises the server only once its socket accepts connections: a shell that finds the record never
        meets a refused connection."""

        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if self.started and svc.owner is not None:  # embedded stores: this process owns the data dir
                svc.owner.advertise(local_url(host, port), token)

    try:
        app = create_app(service=svc, local_token=token, host=host)
        _raise_fd_limit(settings.server.max_connections)
        Listening(uvicorn.Config(app, host=host, port=port, log_level="info", **uvicorn_options(settings))).run()
    finally:
        svc.close()
