"""How a value and a page's words are compared: one normalisation for both sides, character by character.

A character normalises to zero or more characters: Unicode compatibility form (NFKD, so "ﬁ" → "fi", full-width
→ ASCII), accents dropped, case folded, and everything that is not a letter or a digit dropped (spaces,
punctuation, dashes and quotes of every kind, currency signs, thousands separators). On OCR'd pages the usual
recogniser confusions are folded too (O→0, l/I→1, S→5, B→8) — on both sides, so "L0T 1851" matches "LOT 1851".

Numbers and dates get their own variants: a number also as it is printed with 0–2 decimals ("4800" ↔
"4,800.00"), a date in the common spellings of its calendar day ("2026-11-30" ↔ "30 November 2026" ↔
"11/30/26"); a number found on the page is checked by value, so "48.00" never verifies "4800"."""

from __future__ import annotations

import re
import unicodedata
import warnings
from datetime import date, datetime
from functools import lru_cache

import numpy as np

LETTER, DIGIT, CJK = 0, 1, 2  # character kinds: a change of kind is a word boundary; CJK chars are words
CURRENCY_SIGNS = "$€£¥₹₩₽¢₺₫₴₦"
CURRENCY_CODES = {"usd", "eur", "gbp", "jpy", "chf", "cad", "aud", "cny", "inr", "sek", "nok", "dkk", "pln", "czk",
                  "rm", "myr", "sgd"}
OCR_CONFUSIONS = str.maketrans({"o": "0", "l": "1", "i": "1", "s": "5", "b": "8"})
_NUM = re.compile(r"^[+-]?(\d{1,3}([,.' ]\d{3})+|\d+)([.,]\d+)?%?$")
_DATE_SEPARATORS = re.compile(r"[/.\-]")
_PUNCT = "\"'“”‘’«»()[]{}<>.,;:!?*·•|"
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]


def _kind(c: str) -> int:
    o = ord(c)
    if c.isdigit():
        return DIGIT
    if 0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF:
        return CJK
    return LETTER


@lru_cache(maxsize=8192)
def char_norm(c: str, ocr: bool) -> tuple[str, tuple[int, ...]]:
    """One source character → (its normalised characters, their kinds)."""
    d = unicodedata.normalize("NFKD", c)
    out = "".join(ch for ch in d if not unicodedata.combining(ch)).casefold()
    out = "".join(ch for ch in out if ch.isalnum())
    out = unicodedata.normalize("NFKC", out) if out and not out.isascii() else out
    kinds = tuple(_kind(ch) for ch in out)
    if ocr:
        out = out.translate(OCR_CONFUSIONS)
    return out, kinds


@lru_cache(maxsize=2)
def ascii_tables(ocr: bool) -> tuple[np.ndarray, np.ndarray]:
    """Look-up tables for ASCII code points: normalised code (0 = dropped) and kind."""
    code = np.zeros(128, np.uint32)
    kind = np.zeros(128, np.int8)
    for o in range(128):
        s, k = char_norm(chr(o), ocr)
        if s:
            code[o], kind[o] = ord(s), k[0]
    return code, kind


def normalise(text: str, ocr: bool = False) -> str:
    """A value's text as the verifier compares it (see module doc)."""
    return "".join(char_norm(c, ocr)[0] for c in text)


# -- numbers ---------------------------------------------------------------------------------------------

def number_of(text: str, ocr: bool = False) -> str | None:
    """Canonical form of a number written any common way, or None: '4,800.00' / '4.800,00' / "4'800" / '€4800'
    → '4800'; '0,5' → '0.5'; '12.50%' → '12.5%'. Currency signs and codes around it are ignored. On OCR'd
    pages the usual letter-for-digit confusions are undone first."""
    t = unicodedata.normalize("NFKC", text).strip().casefold()
    t = t.strip(_PUNCT + CURRENCY_SIGNS + " ")
    for code in CURRENCY_CODES:
        if t.startswith(code) or t.endswith(code):
            t = (t[len(code):] if t.startswith(code) else t[: -len(code)]).strip(_PUNCT + CURRENCY_SIGNS + " ")
            break
    if ocr:
        t = t.translate(OCR_CONFUSIONS)
    t = t.replace(" ", "")
    if not t or len(t) > 40 or not _NUM.match(t):
        return None
    return _canonical_number(t)


def _canonical_number(t: str) -> str:
    """With both ',' and '.', the later one is the decimal mark. With one kind used several times, it groups
    thousands. Used once: ',' followed by exactly three digits groups thousands, otherwise it is a decimal mark;
    '.' is a decimal mark (the English reading of '1.234')."""
    pct = t.endswith("%")
    t = t.rstrip("%").replace("'", "")
    sign = "-" if t.startswith("-") else ""
    t = t.lstrip("+-")
    if "," in t and "." in t:
        dec = "," if t.rfind(",") > t.rfind(".") else "."
    elif t.count(",") > 1 or t.count(".") > 1:
        dec = ""
    elif "," in t:
        dec = "" if len(t) - t.rfind(",") - 1 == 3 else ","
    else:
        dec = "." if "." in t else ""
    for sep in {",", "."} - {dec}:
        t = t.replace(sep, "")
    whole, _, frac = t.partition(dec) if dec else (t, "", "")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    return sign + whole + (f".{frac}" if frac else "") + ("%" if pct else "")


def number_variants(canon: str) -> set[str]:
    """Normalised spellings of a canonical number as a page may print it: 0, 1 or 2 decimals."""
    body = canon.lstrip("-").rstrip("%")
    whole, _, frac = body.partition(".")
    out = {whole + frac}
    for d in range(len(frac), 3):
        out.add(whole + frac.ljust(d, "0"))
    if whole == "0" and frac:
        out |= {frac.ljust(d, "0") for d in range(len(frac), 3)}  # ".50"
    return {v for v in out if v}


# -- dates -----------------------------------------------------------------------------------------------

def parse_dates(text: str) -> set[date]:
    """The calendar days a date written in any common way may mean (day-first and month-first readings), or an
    empty set. Requires a digit and a day/month/year structure: a plain number is not a date."""
    t = text.strip().strip(_PUNCT)
    if not any(c.isdigit() for c in t) or len(t) < 6 or len(t) > 40:
        return set()
    if _NUM.match(t.replace(" ", "")) and not _DATE_SEPARATORS.search(t):
        return set()
    from dateutil import parser

    out = set()
    for dayfirst in (False, True):
        try:
            with warnings.catch_warnings():  # "12:30 EST": the time zone is beside the point (the day is asked)
                warnings.simplefilter("ignore", parser.UnknownTimezoneWarning)
                dt = parser.parse(t, fuzzy=False, dayfirst=dayfirst, default=datetime(1, 1, 1))
        except (ValueError, OverflowError, TypeError):
            continue
        if dt.year != 1:
            out.add(dt.date())
    return out


def date_variants(d: date) -> set[str]:
    """Normalised spellings of a calendar day: numeric in day-month-year, month-day-year and year-month-day
    order (2- and 4-digit years, with and without zero padding), and with English month names."""
    days = {f"{d.day:02d}", str(d.day)}
    months = {f"{d.month:02d}", str(d.month)}
    years = {str(d.year), f"{d.year % 100:02d}"}
    out = set()
    for dd in days:
        for mm in months:
            for yy in years:
                out |= {dd + mm + yy, mm + dd + yy}
            out.add(str(d.year) + mm + dd)
    name = _MONTHS[d.month - 1]
    ordinal = str(d.day) + ("th" if 11 <= d.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th"))
    for mon in {name, name[:3], name[:4]}:
        for dd in days | {ordinal}:
            for yy in years:
                out |= {dd + mon + yy, mon + dd + yy}
            out.add(str(d.year) + mon + dd)
    return {v for v in out if len(v) >= 5}
