"""The error hierarchy. Every error has a stable ``code`` (used in reports, JSON and HTTP bodies) and a
message that says what to do next. Sorted by who made the mistake, pydantic-ai style:

- ``InputError``: the user's input (a file, a schema, a flag) is wrong — fix the input.
- ``ConfigError``: the installation or settings are wrong — fix the configuration.
- ``ModelBehaviorError``: a model produced something unusable — retry, or use another model.
- ``StoreError``: a store refused or is unreachable — check the store.
"""

from __future__ import annotations


class PageLensError(Exception):
    """Root of all PageLens errors. ``code`` is stable; ``message`` says what to do."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class InputError(PageLensError):
    """The input is wrong; the message says how to fix it."""

    code = "invalid_input"


class PasswordRequired(InputError):
    code = "password_required"


class WrongPassword(InputError):
    code = "wrong_password"


class InvalidDocument(InputError):
    """A PDF that cannot be parsed (``invalid_pdf``); an image file that cannot be decoded gets ``invalid_image``."""

    code = "invalid_pdf"


class EmptyDocument(InputError):
    code = "empty_document"


class EmptyFile(InputError):
    """A file of zero bytes (whatever its name): nothing is stored."""

    code = "empty_file"


class TooLarge(InputError):
    code = "too_large"


class UnsupportedType(InputError):
    code = "unsupported_type"


class Timeout(InputError):
    code = "timeout"


class NotFound(InputError):
    code = "not_found"


class Conflict(InputError):
    """The request does not fit the thing's state now (e.g. cancelling a job that has finished)."""

    code = "conflict"


class Unauthorized(PageLensError):
    """No key, or a wrong, revoked or expired one."""

    code = "unauthorized"


class Forbidden(PageLensError):
    """A valid key asked for more than its role (or collections) allow."""

    code = "forbidden"


class RateLimited(PageLensError):
    """Over a fair-share limit; ``retry_after_s`` says when to try again."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Busy(RateLimited):
    """Every worker for this (page renderers) is busy; retry after ``retry_after_s``."""

    code = "busy"


class ConfigError(PageLensError):
    """Settings or installation are wrong (missing weights, bad URL, ...)."""

    code = "config_error"


class ModelUnavailable(ConfigError):
    code = "model_unavailable"


class StoreError(PageLensError):
    """A store is unreachable, locked or inconsistent."""

    code = "store_error"


class StoreLocked(StoreError):
    code = "store_locked"


class ModelBehaviorError(PageLensError):
    """A model returned output that could not be used, even after retries. Carries the raw output."""

    code = "model_behavior"

    def __init__(self, message: str, *, raw_output: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.raw_output = raw_output
        self.attempts = attempts


class ModelHTTPError(PageLensError):
    """The VLM server answered with an HTTP error, or could not be reached, after the retries."""

    code = "vlm_http_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DiskFull(PageLensError):
    """The data dir's disk is (nearly) full: the file is not ingested and nothing else is lost."""

    code = "disk_full"


class WorkerCrashed(PageLensError):
    """The process reading a file died (a parser crash or the memory cap)."""

    code = "worker_crashed"


class EmbedFailed(PageLensError):
    """The image encoder failed on a file's pages where they were read (a Ray cluster: e.g. out of GPU memory)."""

    code = "embed_failed"


class RenderFailed(InputError):
    """MuPDF cannot draw a page of a stored file (a malformed page); the file itself must be fixed."""

    code = "render_failed"


def error_from(code: str, message: str) -> PageLensError:
    """The error a ``{code, message}`` pair (a report, an HTTP body) stands for: the class with that code, else a
    PageLensError carrying the code. So a shell talking to a server raises what the server's Service raised."""
    def subclasses(cls: type[PageLensError]) -> list[type[PageLensError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    for cls in subclasses(PageLensError):
        if cls.__dict__.get("code") == code:
            return cls(message)
    return PageLensError(message, code=code)
