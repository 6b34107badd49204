"""PyMuPDF, in one place: sniff the file type, open PDFs and images (passwords, limits), read each page's
size, words (text layer) and render it (encoder image, OCR image). Runs inside the reader worker."""

from __future__ import annotations

import html
import math
import re
import unicodedata
from pathlib import Path
from typing import Literal

import numpy as np

from schemas.coords import boxes_from_points
from schemas.errors import (
    EmptyDocument,
    EmptyFile,
    InvalidDocument,
    PasswordRequired,
    TooLarge,
    UnsupportedType,
    WrongPassword,
)
from schemas.wordtable import WordTable
from store.mupdf import pymupdf  # telemetry off, layout models not loaded: see store.mupdf

Kind = Literal["pdf", "image"]
IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"II*\x00": "tiff", b"MM\x00*": "tiff"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
# Files that are clearly something else: reported as unsupported rather than tried as a PDF.
OTHER_SUFFIXES = {".txt", ".md", ".json", ".jsonl", ".csv", ".html", ".htm", ".xml", ".doc", ".docx", ".xls",
                  ".xlsx", ".ppt", ".pptx", ".odt", ".zip", ".gz", ".tar", ".py", ".rst", ".gif", ".bmp",
                  ".webp", ".svg", ".epub", ".mp3", ".mp4"}
SUPPORTED = "PDF, PNG, JPEG or TIFF"

pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)


def sniff_kind(path: Path) -> Kind:
    """PDF or image by content (first KiB): images only by their magic bytes (PNG, JPEG, TIFF), since MuPDF
    would parse an HTML, SVG or EPUB file named ``.png`` by its content. Raises UnsupportedType."""
    with path.open("rb") as f:
        head = f.read(1024)
    if not head:
        raise EmptyFile(f"{path.name} is empty (0 bytes); nothing was stored — check that the file was copied or "
                        "downloaded completely and give it again")
    if b"%PDF" in head:
        return "pdf"
    for magic in IMAGE_TYPES:
        if head.startswith(magic):
            return "image"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        what = _looks_like(head)
        raise UnsupportedType(f"{path.name} is named like an image but its bytes are not a PNG, JPEG or TIFF"
                              f"{f' (this looks like {what})' if what else ''}; give a real {SUPPORTED} file")
    if suffix in OTHER_SUFFIXES:
        raise UnsupportedType(f"{path.name} is a '{suffix}' file, not a {SUPPORTED}; convert it to PDF first")
    return "pdf"  # no header and an unknown suffix: let the PDF parser try to recover it


def _looks_like(head: bytes) -> str | None:
    """What the first bytes of a file look like, for error messages (None when unknown)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML"
    if text.startswith(b"<?xml"):
        return "XML"
    if head.startswith(b"PK\x03\x04"):
        return "an EPUB" if b"epub" in head else "a ZIP archive (EPUB, Office document, ...)"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF image"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image"
    if head.startswith(b"BM"):
        return "a BMP image"
    return None


def open_document(path: Path, kind: Kind, password: str | None, max_pages: int, *,
                  name: str | None = None) -> pymupdf.Document:
    """Open a PDF or image (as a one-page document), authenticate and check the page count.

    ``name``: the file as the user knows it, for messages (``path`` may be a content-addressed copy).
    Raises PasswordRequired / WrongPassword / InvalidDocument / EmptyDocument / TooLarge.
    """
    label = name or path.name
    try:
        doc = pymupdf.open(str(path), filetype="pdf" if kind == "pdf" else None)
    except Exception as e:
        if kind == "image":  # never reported as a PDF problem
            raise InvalidDocument(f"{label} starts like an image but cannot be decoded ({_why(e, path, label)}); "
                                  "it is truncated or corrupt — export it again", code="invalid_image") from e
        raise InvalidDocument(f"{label} is not a readable PDF ({_why(e, path, label)}); "
                              "it cannot be recovered — check the source or re-export it") from e
    if doc.needs_pass:
        if not password:
            raise PasswordRequired(f"{label} is password protected; pass the password with --password")
        if not doc.authenticate(password):
            raise WrongPassword(f"the password given does not open {label}; check it and retry")
    try:
        n = doc.page_count
    except Exception as e:
        raise InvalidDocument(f"{label}: the page tree cannot be read ({_why(e, path, label)})",
                              code="invalid_pdf" if kind == "pdf" else "invalid_image") from e
    if n == 0:
        if kind == "pdf" and not _has_pdf_header(path):  # MuPDF "repairs" garbage into an empty document
            raise InvalidDocument(f"{label} is not a PDF (no %PDF header) and nothing in it can be "
                                  "recovered; check that the file is what you think it is")
        raise EmptyDocument(f"{label} has no pages; nothing to ingest")
    if n > max_pages:
        raise TooLarge(f"{label} has {n} pages, over the limit of {max_pages}; "
                       "split it or raise PAGELENS_INGEST__MAX_PAGES")
    return doc


DAMAGED = "damaged: "  # a reader's warning that the file itself is damaged: shown on the file's outcome


def damage_of(doc: pymupdf.Document, path: Path, kind: Kind) -> str | None:
    """Why the file looks damaged though it opened, or None: a PDF MuPDF had to repair (truncated, a broken
    cross-reference table), a JPEG or PNG that ends before its end marker (cut off: part of the picture is
    missing)."""
    if kind == "pdf":
        if getattr(doc, "is_repaired", False):
            return (DAMAGED + "the PDF is damaged (MuPDF rebuilt its structure: it may be truncated or "
                    "corrupt); some pages or text may be missing — compare with the original")
        return None
    with path.open("rb") as f:
        head = f.read(8)
        f.seek(max(0, path.stat().st_size - 16))
        tail = f.read()
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        return DAMAGED + "the JPEG ends early (truncated): the bottom of the picture may be missing"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail:
        return DAMAGED + "the PNG ends early (truncated): part of the picture may be missing"
    return None


def _has_pdf_header(path: Path) -> bool:
    with path.open("rb") as f:
        return b"%PDF" in f.read(1024)


def _why(e: Exception, path: Path, label: str) -> str:
    """MuPDF's reason, with the file named as the user knows it (not the content-addressed stored copy)."""
    msg = str(e).strip() or e.__class__.__name__
    return msg.replace(str(path), label)[:200]


def page_geometry(page: pymupdf.Page) -> tuple[float, float, int]:
    r = page.rect
    return float(r.width), float(r.height), int(page.rotation)


def text_page(page: pymupdf.Page) -> pymupdf.TextPage:
    """The page's text, parsed once (the costly part of reading a page) for ``text_words`` and ``font_headings``."""
    return page.get_textpage(flags=pymupdf.TEXTFLAGS_WORDS)


def text_words(page: pymupdf.Page, textpage: pymupdf.TextPage | None = None) -> WordTable:
    """Text-layer words with boxes in the BBox contract (rotation applied, fractions of the displayed page),
    in reading order."""
    w, h, _ = page_geometry(page)
    raw = (textpage or text_page(page)).extractWORDS()  # MuPDF order: block, line, word (sorting costs 6x)
    if w <= 0 or h <= 0 or not raw:
        return WordTable.empty("text_layer")
    cols = list(zip(*raw, strict=True))  # x0, y0, x1, y1, text, block, line, word: one column each, in C
    texts = [t.strip() for t in cols[4]]
    boxes, keep = boxes_from_points(np.array(cols[:4], np.float64).T, tuple(page.rotation_matrix),  # type: ignore[arg-type]
                                    w, h)
    keep &= np.fromiter(map(bool, texts), bool, len(texts))
    # one id per (block, line) in MuPDF's order: words of one printed line share it
    key = np.array(cols[5], np.int64) * 100_000 + np.array(cols[6], np.int64)
    lines = np.cumsum(np.concatenate([[True], key[1:] != key[:-1]])).astype(np.int32) - 1
    if keep.all():
        return WordTable(texts, boxes, np.ones(len(texts), np.float32), "text_layer", lines)
    return WordTable([t for t, k in zip(texts, keep, strict=True) if k], boxes[keep],
                     np.ones(int(keep.sum()), np.float32), "text_layer", lines[keep])


HEADING_SIZE = 1.08  # a line in a font this much larger than the page's body text is a heading
MAX_HEADING_CHARS = 150
MAX_HEADINGS = 40  # per page


def outline_by_page(doc: pymupdf.Document) -> dict[int, list[str]]:
    """The document's outline (bookmarks) as page number (1-based) → titles pointing there, in outline order.
    An unreadable outline is no outline."""
    try:
        toc = doc.get_toc(simple=True)
    except Exception:
        return {}
    out: dict[int, list[str]] = {}
    for _level, title, page in toc:
        title = " ".join(str(title).split())[:MAX_HEADING_CHARS]
        if title and isinstance(page, int) and page >= 1:
            out.setdefault(page, []).append(title)
    return out


_HTML_SPANS = re.compile(r"<p |font-size:([\d.]+)pt[^>]*>([^<]*)<")  # a line's start, or a span's size and text


def font_headings(page: pymupdf.Page, textpage: pymupdf.TextPage | None = None) -> list[str]:
    """Lines of the text layer set in a font at least HEADING_SIZE times the page's body size (the size most of
    its characters use): section titles, and in manuals the signatures of the functions they document.

    Read from MuPDF's HTML rendering of the text page (one ``<p>`` a line, a font size a span), built in C and
    scanned by one regular expression: the same sizes as ``get_text("dict")`` at a fraction of its cost (that one
    builds a Python dict per span)."""
    markup = (textpage or text_page(page)).extractHTML()
    try:
        markup.encode()
    except UnicodeEncodeError:  # lone surrogates (MuPDF writes some characters, e.g. a backslash, that way)
        markup = markup.encode("utf-8", "replace").decode()
    lines: list[tuple[float, list[str]]] = []
    weight: dict[str, int] = {}
    size = 0.0
    texts: list[str] = []
    for pt, text in _HTML_SPANS.findall(markup):
        if not pt:  # <p: a new line
            if texts:
                lines.append((size, texts))
            size, texts = 0.0, []
            continue
        if "&" in text:
            text = html.unescape(text)
        weight[pt] = weight.get(pt, 0) + len(text.strip())
        texts.append(text)
        size = max(size, float(pt))
    if texts:
        lines.append((size, texts))
    if not weight:
        return []
    body = float(max(weight, key=lambda k: weight[k]))
    out = []
    for size, parts in lines:
        if size < body * HEADING_SIZE:
            continue
        text = " ".join("".join(parts).split())
        if any(c.isalpha() for c in text):
            out.append(unicodedata.normalize("NFKC", text)[:MAX_HEADING_CHARS])
            if len(out) == MAX_HEADINGS:
                break
    return out


def render(page: pymupdf.Page, dpi: float, max_pixels: int) -> np.ndarray:
    """Render the displayed page to RGB uint8 (H, W, 3) at ``dpi``, scaled down to at most ``max_pixels``."""
    w, h, _ = page_geometry(page)
    zoom = dpi / 72.0
    px = (w * zoom) * (h * zoom)
    if px > max_pixels:
        zoom *= math.sqrt(max_pixels / px)
    zoom = max(zoom, 1e-3)
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
    arr = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)
    return arr[:, :, :3].copy()


def library_version() -> str:
    return f"pymupdf-{pymupdf.VersionBind}"
