"""The API's front door, before any route runs: who the request is (its key, rate limits, key guessing), how large
its body may be (uploads vs JSON), security headers on every answer, and every PageLensError as JSON with the
status of who made the mistake (``STATUS_OF``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access import BOOTSTRAP, Gatekeeper, RateLimiter
from schemas.access import LOCAL_ADMIN, Principal
from schemas.errors import (
    Busy,
    ConfigError,
    Conflict,
    DiskFull,
    Forbidden,
    InputError,
    ModelBehaviorError,
    ModelHTTPError,
    NotFound,
    PageLensError,
    PasswordRequired,
    RateLimited,
    RenderFailed,
    StoreError,
    TooLarge,
    Unauthorized,
    UnsupportedType,
    WrongPassword,
)
from schemas.settings import AccessSettings, Settings

UPLOAD_FILES_FACTOR = 2  # one request body may carry up to twice the per-file upload limit (several files)
BODY_OVERHEAD = 2**20  # bytes a body may have beyond the files: form boundaries and fields, JSON requests
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
JSON_MAX_BODY = 2 * 2**20  # any body but an upload's: the largest schema (256 KB) and 1,000 document refs fit
DOCS_ASSETS = "/docs-assets"  # Swagger UI's scripts and styles, served from the installed package (no CDN)
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer")]
# JSON and PNG responses load nothing and are framed by nothing; HTML (/docs) keeps its CDN scripts.
STRICT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")



# who made the mistake -> the HTTP status; the first class that matches wins (subclasses before their parents)
STATUS_OF: tuple[tuple[type[PageLensError] | tuple[type[PageLensError], ...], int], ...] = (
    (Unauthorized, 401), (Forbidden, 403), (Busy, 503), (RateLimited, 429), (NotFound, 404), (DiskFull, 507),
    (Conflict, 409), (TooLarge, 413), (UnsupportedType, 415), ((PasswordRequired, WrongPassword, RenderFailed), 422),
    (InputError, 400), ((ModelBehaviorError, ModelHTTPError), 502), ((ConfigError, StoreError), 503),
)


def status_of(e: PageLensError) -> int:
    """The HTTP status of ``e``: the first of STATUS_OF that matches, else 500."""
    return next((status for kinds, status in STATUS_OF if isinstance(e, kinds)), 500)


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, **extra}})


def internal_error(e: Exception) -> JSONResponse:
    return error(500, "internal_error", f"an unexpected error occurred ({e.__class__.__name__}); see the server log")


def body_limit(settings: Settings) -> int:
    """The largest request body, in bytes: UPLOAD_FILES_FACTOR files at ``max_upload_mb`` plus BODY_OVERHEAD."""
    return int(settings.max_upload_mb * 2**20 * UPLOAD_FILES_FACTOR) + BODY_OVERHEAD


def _with_security_headers(send: Send) -> Send:
    """``send`` that adds SECURITY_HEADERS to every response, and STRICT_CSP to all but HTML pages."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
            extra = SECURITY_HEADERS + ([] if html else [STRICT_CSP])
            message = {**message, "headers": headers + [(k, v) for k, v in extra if k not in present]}
        await send(message)

    return send_with_headers


class RequestGuard:
    """ASGI middleware: on every route but PUBLIC_PATHS, answers 401 for a missing or wrong X-API-Key and 413
    for a Content-Length over ``max_body`` bytes *before* the body is read, and cuts a streamed (chunked) body
    off at ``max_body`` bytes with a 413. Adds the security headers to every response, errors included."""

    def __init__(self, app: ASGIApp, *, gate: Gatekeeper, max_body: int, limits: AccessSettings,
                 on_denied: Callable[[Principal | None, str, str], None], failures: RateLimiter | None = None) -> None:
        self.app = app
        self.gate = gate
        self.max_body = max_body
        self.requests = RateLimiter(limits.requests_per_minute, limits.burst)
        self.failures = failures or auth_failure_limiter(limits)
        self.on_denied = on_denied

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        if scope["path"] in PUBLIC_PATHS or scope["path"].startswith(DOCS_ASSETS + "/"):
            await self._run(scope, receive, send)
            return
        rejection = self._early_rejection(Headers(scope=scope), scope)
        if rejection is not None:
            await rejection(scope, receive, send)
            return
        await self._run_limited(scope, receive, send)

    def _early_rejection(self, headers: Headers, scope: Scope) -> JSONResponse | None:
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.failures.blocked(client)
        if wait is not None:  # key guessing: this address sent too many wrong keys; its keys are not even checked
            return retry_later(wait, "too many requests with a wrong API key from this address")
        who = self.gate.principal(headers.get("x-api-key"))
        if who is None:
            self.failures.take(client)
            self.on_denied(None, f"{scope['method']} {scope['path']}", "unauthorized")
            return error(401, "unauthorized", "missing, wrong, revoked or expired API key: send a valid one in the "
                                               "X-API-Key header")
        wait = None if who in (LOCAL_ADMIN, BOOTSTRAP) else self.requests.take(who.name)  # operators: no share
        if wait is not None:
            return retry_later(wait, f"key '{who.name}' is over its share of requests "
                                      "(PAGELENS_ACCESS__REQUESTS_PER_MINUTE)")
        scope.setdefault("state", {})["principal"] = who
        length = headers.get("content-length")
        if length is not None and not length.strip().isdigit():
            return error(400, "invalid_request", f"the Content-Length header '{length[:40]}' is not a number")
        if length is not None and int(length) > self._limit(scope):
            return self._too_large(scope)
        return None

    def _limit(self, scope: Scope) -> int:
        """Uploads may be large; every other body is JSON and gets JSON_MAX_BODY."""
        return self.max_body if scope["path"] == "/documents" and scope["method"] == "POST" else JSON_MAX_BODY

    def _too_large(self, scope: Scope) -> JSONResponse:
        if self._limit(scope) == self.max_body:
            return error(413, "too_large", f"the request body is over {self.max_body / 2**20:.0f} MB; send fewer "
                                            "or smaller files in one request")
        return error(413, "too_large", f"a JSON request body may have at most {JSON_MAX_BODY // 1024} KB")

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; an unexpected error still gets a JSON 500 with the security headers (then re-raised for
        the server's log)."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:
            if not started:
                await internal_error(e)(scope, receive, send)
            raise

    async def _run_limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the body cut off at ``max_body`` bytes: past it the app sees a disconnect, its
        answer is dropped and the client gets 413."""
        seen, over, limit = 0, False, self._limit(scope)

        async def limited_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                over = seen > limit
            return {"type": "http.disconnect"} if over else message

        async def send_unless_over(message: Message) -> None:
            if not over:
                await send(message)

        try:
            await self._run(scope, limited_receive, send_unless_over)
        except Exception:
            if not over:
                raise
        if over:
            await self._too_large(scope)(scope, receive, send)


def auth_failure_limiter(limits: AccessSettings) -> RateLimiter:
    """Wrong keys per client address (key guessing), shared by the guard and the public /health."""
    return RateLimiter(limits.auth_failures_per_minute, max(1, int(limits.auth_failures_per_minute)))


def retry_later(wait_s: float, why: str, *, status: int = 429, code: str = "rate_limited") -> JSONResponse:
    seconds = max(1, round(wait_s + 0.5))
    response = error(status, code, f"{why}; retry in {seconds} s")
    response.headers["Retry-After"] = str(seconds)
    return response


def error_response(e: PageLensError) -> JSONResponse:
    """``e`` as the API answers it: ``{"error": {code, message}}`` (a model's raw output along, truncated) with
    ``status_of(e)``; Retry-After for a rate limit or a busy worker."""
    if isinstance(e, RateLimited):
        return retry_later(e.retry_after_s, e.message, status=status_of(e), code=e.code)
    extra = {"raw_output": e.raw_output[:4000]} if isinstance(e, ModelBehaviorError) else {}
    return error(status_of(e), e.code, e.message, **extra)
