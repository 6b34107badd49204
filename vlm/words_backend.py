"""The ``words`` backend: an offline, deterministic stand-in for a VLM that answers from the words of the pages
it is shown (like pydantic-ai's FunctionModel), so extraction, ``pagelens eval extract`` and the tests run here
without a GPU. Not a model: it reads labels.

For each field of the schema it looks for a printed line carrying the field's name as a label ("Total", "Invoice
number:", "DATE") and answers with what follows it — the last amount on that line for amount-like fields, a date
for date fields, the rest of the line (or the next line) otherwise. Without a label, a date field takes the first
date on the pages and a name-like field (company, vendor, merchant, seller, issuer, title, name) the first printed
line of the first page; anything else is null. An array of objects (invoice line items) is read as a table: a header
line naming at least two of the item's fields ("Description  Qty  Amount") opens it, each following line is a row
whose words fall into the header's columns by position, and a totals line ("Subtotal", "Total", ...) or a line
without a number closes it; a header repeated on the next page continues the table. Other arrays answer empty. Boxes
are the words used, on the 0–1000 scale (Qwen2-VL convention). Enable with ``PAGELENS_VLM__BACKEND=words``."""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from schemas.coords import BBox, bbox_to_rel1000
from vlm.backend import VlmRequest, VlmResponse

NAME_LIKE = {"company", "vendor", "merchant", "seller", "issuer", "title", "name", "supplier", "store", "shop"}
AMOUNT_LIKE = {"total", "amount", "price", "sum", "tax", "cost", "balance", "due", "subtotal", "vat", "gst"}
_AMOUNT = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
_DATE = re.compile(r"\b(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{2,4}|"
                   r"[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4})\b")
TOTALS = {"total", "subtotal", "balance", "due", "tax", "vat", "gst", "sum", "carried", "continued"}
LABEL_PROB = 0.9  # what the backend reports as its confidence (a constant: it is not a model)


ASK_STOPWORDS = {"what", "which", "who", "when", "where", "how", "does", "did", "the", "and", "for", "with", "from",
                 "this", "that", "are", "was", "were", "is", "a", "an", "of", "to", "in", "on", "do", "i", "it", "be",
                 "by", "or", "as", "at", "can", "there", "these", "those"}


def _question_of(request: VlmRequest) -> str:
    """The question of an ask prompt (``Question: …`` in its text)."""
    for m in request.messages:
        for part in m.parts:
            if isinstance(part, str) and (found := re.search(r"Question: (.*)", part)):
                return found.group(1)
    return ""


def _label_tokens(key: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key).replace("_", " ").replace("-", " ")
    return [t for t in spaced.lower().split() if t]


class _Line:
    def __init__(self, page: int, words: list[tuple[str, BBox]]) -> None:
        self.page = page
        self.words = words
        self.text = " ".join(w for w, _ in words)
        self.norm = [re.sub(r"[^0-9a-z]", "", w.lower()) for w, _ in words]

    def box(self, start: int = 0, end: int | None = None) -> BBox | None:
        ws = self.words[start:end]
        if not ws:
            return None
        return BBox.of([min(b.x0 for _, b in ws), min(b.y0 for _, b in ws), max(b.x1 for _, b in ws),
                        max(b.y1 for _, b in ws)])


def _lines(pages: Sequence[Any]) -> list[_Line]:
    out = []
    for n, p in enumerate(pages, 1):
        table = p.words
        words = table.words()
        ids = table.lines if getattr(table, "lines", None) is not None else range(len(words))
        current: list[tuple[str, BBox]] = []
        last = None
        for w, lid in zip(words, ids, strict=True):
            if last is not None and lid != last and current:
                out.append(_Line(n, current))
                current = []
            current.append((w.text, w.bbox))
            last = lid
        if current:
            out.append(_Line(n, current))
    return out


def _rows(pages: Sequence[Any]) -> list[_Line]:
    """Visual rows: each page's words grouped by vertical position, left to right — a table's cells are often
    separate text lines in a PDF, but one row to the eye."""
    out = []
    for n, p in enumerate(pages, 1):
        words = sorted(((w.text, w.bbox) for w in p.words.words()), key=lambda t: (t[1].y0 + t[1].y1) / 2)
        row: list[tuple[str, BBox]] = []
        for text, box in words:
            if row:
                centre, last = (box.y0 + box.y1) / 2, row[-1][1]
                if abs(centre - (last.y0 + last.y1) / 2) > (last.y1 - last.y0) / 2:
                    out.append(_Line(n, sorted(row, key=lambda t: t[1].x0)))
                    row = []
            row.append((text, box))
        if row:
            out.append(_Line(n, sorted(row, key=lambda t: t[1].x0)))
    return out


REFERRING = {"it", "its", "that", "this", "they", "them", "their", "those", "these", "one", "ones", "same", "there",
             "he", "she", "his", "her", "about", "else", "also", "other"}


def _standalone(request: VlmRequest) -> str:
    """A follow-up made standalone without a model: when it refers back (a pronoun, "what about …", or three
    words or fewer), the last question's content words it lacks are added to it; else it is kept as asked."""
    text = " ".join(p for m in request.messages for p in m.parts if isinstance(p, str))
    follow = re.search(r"Follow-up question: (.*)", text)
    asked = re.findall(r"^User: (.*)$", text, flags=re.MULTILINE)
    question = follow.group(1).strip() if follow else ""
    if not asked or not question:
        return question or "?"
    words = [re.sub(r"[^0-9a-z]", "", w.lower()) for w in question.split()]
    if not (REFERRING & set(words)) and len(words) > 3:
        return question
    have = set(words)
    extra = [w for w in asked[-1].split()
             if (n := re.sub(r"[^0-9a-z]", "", w.lower())) and n not in have and n not in ASK_STOPWORDS
             and n not in REFERRING]
    return " ".join([question.rstrip("?"), *extra]).strip() + ("?" if question.endswith("?") else "")


class WordsBackend:
    family = "qwen2-vl"

    def __init__(self, model: str = "pagelens-words", latency_s: float = 0.0) -> None:
        self.model = model
        self.latency_s = latency_s  # a server's answer time, simulated (batch tests and benchmarks)

    def generate(self, request: VlmRequest) -> VlmResponse:
        if self.latency_s:
            time.sleep(self.latency_s)
        lines = _lines(request.pages)
        if request.json_schema is None:  # free text (captions): the first printed lines
            text = " ".join(line.text for line in lines[:3])[:300] or "an empty page"
            return VlmResponse(text=text, model=self.model, token_logprobs=[math.log(LABEL_PROB)])
        if "standalone" in request.json_schema.get("properties", {}):
            return VlmResponse(text=json.dumps({"standalone": _standalone(request)}), model=self.model)
        if {"found", "answer", "evidence"} <= set(request.json_schema.get("properties", {})):
            data = self._ask(_question_of(request), lines)
        else:
            data = self._fill(request.json_schema, "", lines, _rows(request.pages))
        return VlmResponse(text=json.dumps(data), model=self.model, token_logprobs=[math.log(LABEL_PROB)])

    @staticmethod
    def _ask(question: str, lines: list[_Line]) -> dict[str, Any]:
        """A question: the printed line sharing the most of the question's words (at least half of them, and one
        at least), quoted as the evidence with its box; else not found."""
        terms = {re.sub(r"[^0-9a-z]", "", w.lower()) for w in question.split()} - ASK_STOPWORDS
        terms.discard("")
        best, overlap = None, 0
        for line in lines:
            n = len(terms & set(line.norm))
            if n > overlap:
                best, overlap = line, n
        if best is None or overlap * 2 < len(terms):
            return {"found": False, "answer": "", "evidence": []}
        box = best.box()
        return {"found": True, "answer": best.text[:300],
                "evidence": [{"page": best.page, "quote": best.text[:200],
                              "bbox_2d": bbox_to_rel1000(box) if box is not None else None}]}

    # -- schema walk ------------------------------------------------------------------------------------------
    def _fill(self, schema: dict[str, Any], key: str, lines: list[_Line], rows: list[_Line]) -> Any:
        """``lines``: the printed lines (labels are read on them); ``rows``: visual rows (tables are read on them)."""
        props = schema.get("properties", {})
        if set(props) == {"value", "page", "bbox_2d"}:  # a grounded leaf
            value, line, span = self._answer(key, props["value"], lines)
            box = line.box(*span) if line is not None else None
            return {"value": value, "page": line.page if line is not None else 1,
                    "bbox_2d": bbox_to_rel1000(box) if box is not None else None}
        if schema.get("type") == "object" or props:
            return {k: self._fill(v, k, lines, rows) for k, v in props.items()}
        if schema.get("type") == "array":
            return self._table(schema.get("items", {}), rows)
        value, _, _ = self._answer(key, schema, lines)
        return value

    def _answer(self, key: str, leaf: dict[str, Any], lines: list[_Line]
                ) -> tuple[Any, _Line | None, tuple[int, int | None]]:
        """(value, the line it came from, the word span used) for one leaf."""
        label = _label_tokens(key)
        kinds = _types(leaf)
        is_date = leaf.get("format") == "date" or "date" in label
        is_amount = bool(kinds & {"number", "integer"}) or bool(set(label) & AMOUNT_LIKE)
        for line in self._labelled(label, lines):
            start = self._after_label(line, label)
            if is_date:
                m = _DATE.search(" ".join(w for w, _ in line.words[start:]))
                if m:
                    return self._span(line, m.group(0), start, kinds)
            elif is_amount:
                for i in range(len(line.words) - 1, start - 1, -1):
                    if _AMOUNT.fullmatch(line.words[i][0].strip("$€£:RM")):
                        return _typed(line.words[i][0].strip("$€£:RM"), kinds), line, (i, i + 1)
            elif start < len(line.words):
                return _typed(" ".join(w for w, _ in line.words[start:]).strip(" :"), kinds), line, (start, None)
        if is_date:
            for line in lines:
                m = _DATE.search(line.text)
                if m:
                    return self._span(line, m.group(0), 0, kinds)
        if set(label) & NAME_LIKE and lines:
            return _typed(lines[0].text, kinds), lines[0], (0, None)
        return _empty(leaf), None, (0, None)

    def _table(self, item: dict[str, Any], lines: list[_Line]) -> list[Any]:
        """Rows of every table whose header names at least two of the item's fields (see the module's docstring)."""
        props = item.get("properties", {})
        leaves = {k: v for k, v in props.items() if set(v.get("properties", {})) == {"value", "page", "bbox_2d"}}
        if len(leaves) < 2:
            return []
        rows: list[Any] = []
        columns: list[tuple[str, float, float]] | None = None  # (field, x0, x1) of the open table's header
        for line in lines:
            header = self._header(leaves, line)
            if header is not None:
                columns = header
                continue
            if columns is None:
                continue
            numbers = [w for w, _ in line.words if _AMOUNT.fullmatch(w.strip("$€£:RM"))]
            if (line.norm and line.norm[0] in TOTALS) or not numbers:
                columns = None  # the table ends (a totals line, or prose)
                continue
            rows.append(self._row(line, columns, leaves))
        return rows

    @staticmethod
    def _header(leaves: dict[str, Any], line: _Line) -> list[tuple[str, float, float]] | None:
        """(field, x0, x1) per column, left to right, when ``line`` names at least two of the item's fields."""
        found = []
        for key in leaves:
            label = _label_tokens(key)
            i = next((k for k, n in enumerate(line.norm) if any(_abbreviates(n, t) for t in label)), None)
            if i is not None:
                box = line.words[i][1]
                found.append((key, box.x0, box.x1))
        if len(found) < 2 or len(found) < len(line.words) - 1:  # a header is mostly labels, not a sentence
            return None
        return sorted(found, key=lambda c: c[1])

    @staticmethod
    def _row(line: _Line, columns: list[tuple[str, float, float]], leaves: dict[str, Any]) -> dict[str, Any]:
        """The row's words split into the header's columns: each word goes to the column its centre falls in,
        the boundaries halfway between one header label's end and the next one's start."""
        bounds = [(a[2] + b[1]) / 2 for a, b in itertools.pairwise(columns)]
        cells: dict[str, list[int]] = {c[0]: [] for c in columns}
        for k, (_, box) in enumerate(line.words):
            centre = (box.x0 + box.x1) / 2
            col = sum(1 for b in bounds if centre > b)
            cells[columns[col][0]].append(k)
        out: dict[str, Any] = {}
        for key in leaves:
            ks = cells.get(key, [])
            kinds = _types(leaves[key]["properties"]["value"])
            if not ks:
                out[key] = {"value": _empty(leaves[key]["properties"]["value"]), "page": line.page, "bbox_2d": None}
                continue
            text = " ".join(line.words[k][0] for k in ks)
            value = _typed(text.strip("$€£:RM") if kinds & {"number", "integer"} else text, kinds)
            cell = line.box(ks[0], ks[-1] + 1)
            out[key] = {"value": value, "page": line.page, "bbox_2d": bbox_to_rel1000(cell) if cell else None}
        return out

    @staticmethod
    def _labelled(label: list[str], lines: list[_Line]) -> list[_Line]:
        """Lines holding every label token as the start of a word; a line that starts with the label first."""
        if not label:
            return []
        hits = [line for line in lines if all(any(n.startswith(t) for n in line.norm) for t in label)]
        return sorted(hits, key=lambda line: 0 if line.norm and line.norm[0].startswith(label[0]) else 1)

    @staticmethod
    def _after_label(line: _Line, label: list[str]) -> int:
        last = max((i for i, n in enumerate(line.norm) if any(n.startswith(t) for t in label)), default=-1)
        return last + 1

    @staticmethod
    def _span(line: _Line, found: str, start: int, kinds: set[str]) -> tuple[Any, _Line, tuple[int, int | None]]:
        first = found.split()[0]
        i = next((k for k in range(start, len(line.words)) if first in line.words[k][0]), start)
        return _typed(found, kinds), line, (i, i + len(found.split()))


def _abbreviates(word: str, label: str) -> bool:
    """``word`` names ``label``: the same word, a prefix of it either way ("desc", "descriptions"), or an
    abbreviation keeping its first letter and its order ("qty" for quantity, "amt" for amount)."""
    if len(word) < 2 or not label or word[0] != label[0]:
        return False
    if word.startswith(label) or label.startswith(word):
        return True
    rest = iter(label)
    return all(c in rest for c in word)


def _types(leaf: dict[str, Any]) -> set[str]:
    t = leaf.get("type")
    out = set(t) if isinstance(t, list) else {t} if t else set()
    for alt in leaf.get("anyOf", []):
        out |= _types(alt)
    return out


def _typed(text: str, kinds: set[str]) -> Any:
    if kinds & {"number", "integer"} and "string" not in kinds:
        try:
            x = float(text.replace(",", ""))
            return int(x) if "integer" in kinds and "number" not in kinds else x
        except ValueError:
            return None if "null" in kinds else 0
    return text


def _empty(leaf: dict[str, Any]) -> Any:
    kinds = _types(leaf)
    if "null" in kinds:
        return None
    if "boolean" in kinds:
        return False
    if kinds & {"number", "integer"}:
        return 0
    return ""
