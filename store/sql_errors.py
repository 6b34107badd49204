"""One answer to a database failure for every store operation: a StoreError saying what to check."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from schemas.errors import StoreError

C = TypeVar("C", bound=type)


def store_errors(fn: Any) -> Any:
    """Turn a database failure (PostgreSQL gone, disk full, locked) into one clear StoreError."""
    import functools
    import inspect

    def translate(e: SQLAlchemyError) -> StoreError:
        why = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:200]
        return StoreError(f"the catalog database failed ({e.__class__.__name__}: {why}); check that it is running "
                          "and reachable (PAGELENS_DATABASE_URL), then retry — finished work is kept")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except SQLAlchemyError as e:
                raise translate(e) from e
        return gen

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as e:
            raise translate(e) from e
    return call


def translated(cls: C) -> C:
    """Class decorator: each public operation of ``cls`` (its own, not inherited) answers a database failure as
    ``store_errors`` does. Applied where each class is defined, so the translation is seen there."""
    for name, fn in list(vars(cls).items()):
        if not name.startswith("_") and callable(fn) and name != "close":
            setattr(cls, name, store_errors(fn))
    return cls
