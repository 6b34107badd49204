"""Who a request is: API keys checked against the catalog (a hash lookup, cached for a moment), the bootstrap
admin key (PAGELENS_API_KEY) and the local shells' token, and a fair share per key (requests per minute and
jobs in the queue).

Without PAGELENS_API_KEY and without any key in the catalog the API stays open to whoever can reach it, acting
as the local admin (the loopback default it always had); once a key exists, every guarded request needs one."""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.access import KEY_PREFIX, LOCAL_ADMIN, Principal
from schemas.errors import InputError

CACHE_S = 1.0  # how long a checked key is trusted without asking the catalog again (revocation: at most this)
BOOTSTRAP = Principal(name="bootstrap", role="admin")  # PAGELENS_API_KEY
_EXPIRY = re.compile(r"^(\d{1,5})([dhm])$")


def make_key() -> str:
    """A new high-entropy key: ``pl_`` and 43 url-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_moment(text: str, *, ahead: bool, option: str) -> datetime:
    """A duration (``30d``, ``12h``, ``90m``) from now (``ahead``) or ago, or an ISO date/time (UTC when no zone is
    given). Raises InputError naming ``option``."""
    now = datetime.now(UTC)
    m = _EXPIRY.match(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        if n <= 0:
            raise InputError(f"{option} {text}: give a positive duration such as 30d")
        span = {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]
        return now + span if ahead else now - span
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise InputError(f"{option} {text!r}: give a duration (30d, 12h, 90m) or an ISO date (2027-01-31)") from e
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_expiry(text: str | None) -> datetime | None:
    """When a new key expires: ``30d``, ``12h``, ``90m`` from now, or an ISO date; None: never. Raises
    InputError (also for a moment in the past)."""
    if text is None or not text.strip():
        return None
    t = parse_moment(text, ahead=True, option="--expires")
    if t <= datetime.now(UTC):
        raise InputError(f"--expires {text}: that is in the past")
    return t


class Gatekeeper:
    """Resolves the key a request sends to its principal. ``catalog`` is the Service's (keys live there)."""

    def __init__(self, catalog: Any, *, bootstrap_key: str | None, local_token: str | None) -> None:
        self.catalog = catalog
        self.bootstrap_key = bootstrap_key
        self.local_token = local_token
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._any: tuple[float, bool] = (0.0, False)
        self._lock = threading.Lock()

    def open(self) -> bool:
        """Whether no key is needed: no bootstrap key and no key in the catalog (rechecked each CACHE_S)."""
        if self.bootstrap_key:
            return False
        at, any_keys = self._any
        if time.monotonic() - at > CACHE_S:
            any_keys = self.catalog.keys.any()
            self._any = (time.monotonic(), any_keys)
        return not any_keys

    def principal(self, given: str | None) -> Principal | None:
        """Who ``given`` is; None for a missing, wrong, revoked or expired key. The shared keys are compared in
        constant time; catalog keys are found by their SHA-256."""
        if self.open():
            return LOCAL_ADMIN
        if not given:
            return None
        if self.bootstrap_key and hmac.compare_digest(given.encode(), self.bootstrap_key.encode()):
            return BOOTSTRAP
        if self.local_token and hmac.compare_digest(given.encode(), self.local_token.encode()):
            return LOCAL_ADMIN
        if not given.startswith(KEY_PREFIX) or len(given) > 200:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(given)
            if hit is not None and now - hit[0] <= CACHE_S:
                return hit[1]
        who = self.catalog.keys.principal(given)
        with self._lock:
            self._cache[given] = (now, who)
            self._cache.move_to_end(given)
            while len(self._cache) > 10_000:
                self._cache.popitem(last=False)
        return who

    def forget(self) -> None:
        """Drop what was cached (a key was revoked or created here: it counts at once)."""
        with self._lock:
            self._cache.clear()
        self._any = (0.0, False)


class RateLimiter:
    """A token bucket per name: ``per_minute`` requests a minute, bursts up to ``burst``. ``take`` answers None
    (go on) or the seconds to wait."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, name: str) -> float | None:
        """The seconds to wait when ``name``'s bucket is empty now, else None (takes nothing)."""
        if self.rate <= 0:
            return None
        with self._lock:
            hit = self._buckets.get(name)
        if hit is None:
            return None
        tokens = min(self.burst, hit[0] + (time.monotonic() - hit[1]) * self.rate)
        return (1.0 - tokens) / self.rate if tokens < 1.0 else None

    def take(self, name: str) -> float | None:
        if self.rate <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[name] = (tokens - 1.0, now)
            self._buckets.move_to_end(name)
            while len(self._buckets) > 100_000:
                self._buckets.popitem(last=False)
        return None


class Acting:
    """A Service seen as one principal (the UI's signed-in key): every operation that takes ``who`` gets this
    one, so a shell cannot forget to pass it."""

    def __init__(self, svc: Any, who: Principal) -> None:
        self._svc = svc
        self.who = who

    def __getattr__(self, name: str) -> Any:
        import functools
        import inspect

        attr = getattr(self._svc, name)
        if callable(attr) and "who" in inspect.signature(attr).parameters:
            return functools.partial(attr, who=self.who)
        return attr
