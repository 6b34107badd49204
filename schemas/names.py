"""Names people give things (collections, keys): checked once, the same for every catalog database.

A name is shown to other people and compared exactly, so it must look like what it is: no control characters
(NUL included, which PostgreSQL refuses and SQLite stores), no right-to-left overrides and no zero-width
characters (which make ``default`` and ``default\u202e`` look alike), and a bounded length."""

from __future__ import annotations

import unicodedata

from schemas.errors import InputError

MAX_NAME = 200  # characters; the catalog's collection column holds 200
_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\ufeff", "\u061c"}
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def check_name(kind: str, value: str, max_len: int = MAX_NAME) -> str:
    """``value`` when it is a fit ``kind`` name (e.g. "collection"). Raises InputError saying what is wrong."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"the {kind} name is empty; give one")
    if len(value) > max_len:
        raise InputError(f"the {kind} name is {len(value)} characters long; at most {max_len} are allowed")
    if value != value.strip():
        raise InputError(f"the {kind} name '{value.strip()[:60]}' starts or ends with spaces; remove them")
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise InputError(f"the {kind} name has a control character (U+{ord(ch):04X}); remove it")
        if ch in _INVISIBLE or ch in _BIDI:
            raise InputError(f"the {kind} name has an invisible or direction-changing character (U+{ord(ch):04X}), "
                             "which makes it look like another name; remove it")
    return value
