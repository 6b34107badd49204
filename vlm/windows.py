"""The page windows of a long extraction: which pages each VLM call shows (``plan_windows``, from the pages search
ranks highest for each field), and how the windows' answers merge into one record (``Merge``). Pure data: no
model, no store."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.answers import Alternative, FieldResult

PageKey = tuple[str, int]  # (doc_id, page number)


@dataclass(frozen=True)
class Window:
    """One VLM call of a long extraction: the top-level fields it answers and the pages it shows."""

    fields: tuple[str, ...]
    pages: tuple[PageKey, ...]


def plan_windows(ranked: dict[str, list[PageKey]], arrays: set[str], *, first: PageKey, max_pages: int,
                 per_field: int, order: Callable[[PageKey], Any]) -> list[Window]:
    """The calls a long extraction makes, from each top-level field's pages as search ranked them.

    A scalar or object field reads ``per_field`` windows: the document's first page with its best-ranked pages,
    then its next-best ``max_pages``; each is a candidate, and the merge keeps the best verified one and reports
    the others that disagree. An array field (line items) reads its ``per_field * max_pages`` best pages in page
    order, ``max_pages`` at a time, so rows running over consecutive pages are read in order. Fields that read the
    same pages share a call: at most ``per_field`` calls per top-level field, whatever the document's length."""
    grouped: dict[tuple[PageKey, ...], list[str]] = {}
    for name, pages in ranked.items():
        if name in arrays:
            best = sorted(dict.fromkeys(pages[:per_field * max_pages]), key=order)
            chunks = [best[i:i + max_pages] for i in range(0, len(best), max_pages)] or [[first]]
        else:
            rest = [p for p in dict.fromkeys(pages) if p != first]
            chunks = [[first, *rest[:max_pages - 1]]]
            rest = rest[max_pages - 1:]
            while rest and len(chunks) < per_field:
                chunks.append(rest[:max_pages])
                rest = rest[max_pages:]
        for chunk in chunks:
            grouped.setdefault(tuple(sorted(chunk, key=order)), []).append(name)
    windows = [Window(tuple(names), pages) for pages, names in grouped.items()]
    return sorted(windows, key=lambda w: order(w.pages[0]))


def under(path: str, name: str) -> bool:
    return path == name or path.startswith((f"{name}.", f"{name}["))


_STATUS_RANK = {"verified": 2, "approximate": 1, "unverified": 0}


def _empty_value(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


def _same(a: Any, b: Any) -> bool:
    """Two answers are the same value (case, spacing and number formatting aside)."""
    def norm(v: Any) -> str:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return f"{float(v):.6g}"
        if isinstance(v, str):
            return " ".join(v.lower().split())
        return json.dumps(v, sort_keys=True, default=str)
    return norm(a) == norm(b)


@dataclass
class _Candidate:
    rank: int  # the window's position (windows are in page order)
    value: Any
    fields: list[FieldResult]

    def score(self) -> tuple[int, int, int, float, int]:
        """Answered, then verified leaves, then approximate ones, then confidence; the earlier window on ties."""
        answered = [f for f in self.fields if not _empty_value(f.value)]
        return (0 if _empty_value(self.value) else 1,
                sum(1 for f in answered if f.status == "verified"),
                sum(1 for f in answered if f.status == "approximate"),
                sum(f.confidence for f in answered), -self.rank)


class Merge:
    """Merges the windows' answers per top-level field. A scalar or object field takes its best candidate
    (``_Candidate.score``); a different non-empty value another window gave for the same leaf is kept on that leaf
    as an ``Alternative``. An array field concatenates its windows' items in page order; an item another window
    already gave — the same values verified at the same place (the same page and box: windows that overlap) — is
    kept once, while equal rows within one window or on different pages (the same article bought twice) all stay."""

    def __init__(self, arrays: set[str]) -> None:
        self.arrays = arrays
        self.candidates: dict[str, list[_Candidate]] = {}

    def add(self, name: str, rank: int, value: Any, fields: list[FieldResult]) -> None:
        self.candidates.setdefault(name, []).append(_Candidate(rank, value, fields))

    def result(self) -> tuple[dict[str, Any], list[FieldResult]]:
        data: dict[str, Any] = {}
        fields: list[FieldResult] = []
        for name, cands in self.candidates.items():
            lists = [c for c in cands if isinstance(c.value, list)]
            if name in self.arrays and lists:  # a window that answered null for a list has no items to add
                value, leaves = self._array(name, lists)
            else:
                value, leaves = self._scalar(cands)
            data[name] = value
            fields += leaves
        return data, fields

    @staticmethod
    def _scalar(cands: list[_Candidate]) -> tuple[Any, list[FieldResult]]:
        best = max(cands, key=_Candidate.score)
        others = sorted((c for c in cands if c is not best), key=_Candidate.score, reverse=True)
        out = []
        for leaf in best.fields:
            alts: list[Alternative] = []
            for c in others:
                for f in c.fields:
                    if f.path == leaf.path and not _empty_value(f.value) and not _same(f.value, leaf.value) \
                            and not any(_same(f.value, a.value) for a in alts):
                        alts.append(Alternative(value=f.value, boxes=f.boxes, confidence=f.confidence,
                                                status=f.status))
            out.append(leaf.model_copy(update={"alternatives": alts}) if alts else leaf)
        return best.value, out

    @staticmethod
    def _array(name: str, cands: list[_Candidate]) -> tuple[list[Any], list[FieldResult]]:
        items: list[Any] = []
        fields: list[FieldResult] = []
        seen: dict[tuple[str, tuple[Any, ...]], int] = {}  # (item, where it was verified) -> the window that gave it
        for c in sorted(cands, key=lambda c: c.rank):
            for i, item in enumerate(c.value):
                prefix = f"{name}[{i}]"
                leaves = [f for f in c.fields if under(f.path, prefix)]
                where = tuple(sorted((b.doc_id, b.page, tuple(b.bbox.as_list()) if b.bbox else ())
                                     for f in leaves if f.status == "verified" for b in f.boxes[:1]))
                key = (json.dumps(item, sort_keys=True, default=str), where)
                if where and seen.get(key, c.rank) != c.rank:
                    continue  # the same printed row, read again by another window that saw the same page
                seen[key] = c.rank
                new = f"{name}[{len(items)}]"
                items.append(item)
                fields += [f.model_copy(update={"path": new + f.path[len(prefix):]}) for f in leaves]
        return items, fields
