"""OCR words from the geometry of the recognised characters, on one of two engines (both run offline, their ONNX
models inside their wheels):

- ``rapidocr`` (3.x, the default): PP-OCRv6 small detection and recognition; recognises the spaces of a line;
- ``rapidocr-onnxruntime`` (1.4, the engine before it): PP-OCRv4 mobile; for comparison, when installed.

Each engine reports every character's box. A line is split at recognised spaces and wherever the distance between
two character centres is clearly wider than the line's typical character pitch (RapidOCR 1.4 often drops the spaces
of a line: ``MRD.I.Y.(JOHOR)SDNBHD``). A word's box is the union of its characters, its confidence the mean of its
characters' scores, and its character edges are kept so a value inside a word gets the box of exactly its
characters. Lines are grouped into printed rows (tolerant to skew) and numbered in reading order.

Runtime (rapidocr 3.x): OpenVINO on a CPU (the same ONNX models, 1.6× onnxruntime's speed on the receipts, the same
words), onnxruntime with CUDA where onnxruntime-gpu sees a GPU, onnxruntime's CPU provider otherwise
(``ocr_runtime``). Threads: each reader process runs one engine with ``threads`` inference threads (``ocr_threads``:
the cores shared among the readers), so N readers use N cores without oversubscribing them (OpenVINO's threads are
not pinned to cores: two readers each pinned their one thread to the same core)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any, Literal

import numpy as np

from schemas.coords import boxes_from_pixels
from schemas.wordtable import WordTable

log = logging.getLogger(__name__)

SPLITTER_VERSION = "charsplit1"  # how lines become words: part of the ``ocr_words`` stage (``ocr_version``)
GAP_PITCHES = 1.5  # a centre-to-centre distance above this many expected pitches is a word break
MIN_PITCH_CHARS = 3  # lines with fewer characters are split at spaces only

Engine = Literal["rapidocr", "rapidocr-onnxruntime"]
DEFAULT_ENGINE: Engine = "rapidocr"
_PACKAGE = {"rapidocr": "rapidocr", "rapidocr-onnxruntime": "rapidocr-onnxruntime"}

# one recognised line: its quad (4, 2) pixels, text, score, and per character of the text (spaces included) its
# box (n, 4) pixels x0, y0, x1, y1 and score, when the engine placed every character
RawLine = tuple[np.ndarray, str, float, "np.ndarray | None", "list[float] | None"]


def ocr_threads(readers: int) -> int:
    """OCR inference threads for each of ``readers`` reader processes: the cores, shared."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, readers))


def engine_version(engine: str = DEFAULT_ENGINE) -> str:
    """The engine and its version, as the ``ocr_words`` stage records it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{engine}-{version(_PACKAGE[engine])}"
    except (PackageNotFoundError, KeyError):
        return f"{engine}-missing"


def ocr_version(engine: str = DEFAULT_ENGINE) -> str:
    """What produced a document's OCR'd words (the ``ocr_words`` stage): switching the engine re-reads the
    documents that have OCR'd pages, and only those."""
    tuned = f",det{DET_MAX_SIDE},unclip{UNCLIP:g},rec{REC_BATCH},nocls" if engine == "rapidocr" else ""
    return f"{SPLITTER_VERSION}+{engine_version(engine)}{tuned}"


# OpenVINO needs more of the reader's memory than onnxruntime: on a dense A4 page (refcard at 144 DPI, 257 lines)
# 1.1 GB resident and 2.1 GB of private writable mappings (what the reader's cap, RLIMIT_DATA, counts) against
# onnxruntime's 0.7 and 0.9 GB. Below this cap ``auto`` takes onnxruntime, whose page fits a 1 GB reader.
OPENVINO_MIN_MB = 2560


def runtime_for(runtime: str, memory_mb: int) -> str:
    """The runtime a reader with a cap of ``memory_mb`` asks for: ``auto`` becomes ``onnxruntime`` where OpenVINO's
    page would not fit the cap (imports nothing)."""
    return "onnxruntime" if runtime == "auto" and memory_mb < OPENVINO_MIN_MB else runtime


def runtime_of(runtime: str = "auto") -> Literal["cuda", "openvino", "onnxruntime"]:
    """Where rapidocr 3.x runs: ``auto`` is onnxruntime's CUDA provider when onnxruntime-gpu sees a GPU, else
    OpenVINO when it is installed (a dependency: 1.6× onnxruntime's CPU provider here), else onnxruntime."""
    if runtime == "onnxruntime":
        return "cuda" if _cuda() else "onnxruntime"
    if runtime == "openvino":
        if not _has("openvino"):
            raise RuntimeError("PAGELENS_INGEST__OCR_RUNTIME=openvino but OpenVINO is not installed: pip install "
                               "openvino, or set PAGELENS_INGEST__OCR_RUNTIME=auto")
        return "openvino"
    if runtime != "auto":
        raise ValueError(f"unknown OCR runtime {runtime!r}: give auto, openvino or onnxruntime")
    return "cuda" if _cuda() else "openvino" if _has("openvino") else "onnxruntime"


def _has(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


@lru_cache(maxsize=2)
def _engine(engine: str = DEFAULT_ENGINE, threads: int = 0,
            runtime: str = "auto") -> Callable[[np.ndarray], list[RawLine]]:
    """The engine's reader of one BGR image, built once per process (``threads`` 0: the runtime's default)."""
    from store.mupdf import quiet_onnxruntime

    quiet_onnxruntime()
    if engine not in _PACKAGE:
        raise ValueError(f"unknown OCR engine {engine!r}: give one of {', '.join(_PACKAGE)}")
    try:
        return _rapidocr3(threads, runtime_of(runtime)) if engine == "rapidocr" else _rapidocr14(threads)
    except ImportError as e:
        raise RuntimeError(f"the OCR engine {engine} is not installed ({e}): pip install {_PACKAGE[engine]}, or set "
                           f"PAGELENS_INGEST__OCR_ENGINE={DEFAULT_ENGINE}") from e


# rapidocr 3.x as tuned on the receipts (bench/ocr_engines.py, BENCHMARKS.md): detection on the page scaled to at
# most DET_MAX_SIDE pixels (its default scales the *short* side up to 736: a tall receipt was detected at 3× its
# pixels, for nothing), no angle classifier (a line read upside down is rarer than one it turns wrongly: word F1
# 0.854 → 0.868), recognition two lines a batch (lines of one batch are padded to the widest), and detected lines
# grown by 1.3 instead of 1.6 (its boxes stood 30 % taller than the printed characters; 1.3: 16 %).
DET_MAX_SIDE = 1280
REC_BATCH = 2
UNCLIP = 1.3


def _rapidocr3(threads: int, runtime: str) -> Callable[[np.ndarray], list[RawLine]]:
    from rapidocr import EngineType, RapidOCR

    params: dict[str, Any] = {"Global.log_level": "warning", "Global.use_cls": False, "Det.limit_type": "max",
                              "Det.limit_side_len": DET_MAX_SIDE, "Det.unclip_ratio": UNCLIP,
                              "Rec.rec_batch_num": REC_BATCH}
    if runtime == "openvino":  # the wheel's ONNX models, read by OpenVINO (nothing downloaded)
        _bounded_openvino()
        params.update({"Det.engine_type": EngineType.OPENVINO, "Rec.engine_type": EngineType.OPENVINO,
                       "EngineConfig.openvino.performance_hint": "LATENCY",
                       "EngineConfig.openvino.enable_cpu_pinning": False})
        if threads:
            params["EngineConfig.openvino.inference_num_threads"] = min(threads, os.cpu_count() or 1)
    elif threads:
        params.update({"EngineConfig.onnxruntime.intra_op_num_threads": threads,
                       "EngineConfig.onnxruntime.inter_op_num_threads": 1})
    if runtime == "cuda":  # onnxruntime-gpu installed and a GPU seen: detection and recognition run there
        params["EngineConfig.onnxruntime.use_cuda"] = True
    ocr = RapidOCR(params=params)

    def read(bgr: np.ndarray) -> list[RawLine]:
        r: Any = ocr(bgr, return_word_box=True, return_single_char_box=True)  # RapidOCROutput (det+rec run)
        if r.boxes is None or r.txts is None or r.scores is None:
            return []
        out: list[RawLine] = []
        for k, (quad, text, score) in enumerate(zip(r.boxes, r.txts, r.scores, strict=True)):
            chars = r.word_results[k] if k < len(r.word_results) else None
            out.append((np.asarray(quad, np.float64), str(text), float(score), *_char_boxes(str(text), chars)))
        return out

    return read


# OpenVINO's CPU settings rapidocr has no key for. Its cache of kernels per input shape (5,000 shapes by default:
# every line width and page size is one) grew a reader by 300 MB over 48 receipts and took a dense page to 3.5 GB
# of private mappings, over the reader's default cap; without it, and with one stream, the reader stays flat, 3 %
# slower.
_OPENVINO_CPU = {"CPU_RUNTIME_CACHE_CAPACITY": "0", "NUM_STREAMS": "1"}


def _bounded_openvino() -> None:
    """Give rapidocr's OpenVINO sessions ``_OPENVINO_CPU`` (its ``CPUConfig`` builds their CPU properties)."""
    from rapidocr.inference_engine.openvino import main as ov

    base = ov.CPUConfig
    if getattr(base, "pagelens", False):
        return

    class CPUConfig(base):  # type: ignore[misc, valid-type]
        pagelens = True

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), **_OPENVINO_CPU}

    ov.CPUConfig = CPUConfig  # type: ignore[misc]


def _cuda() -> bool:
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:  # no onnxruntime, or a broken GPU build: the CPU is the answer
        return False


def _char_boxes(text: str, chars: Any) -> tuple[np.ndarray | None, list[float] | None]:
    """rapidocr 3.x places every character but the spaces: boxes and scores for the whole text (a space gets the
    gap between its neighbours), or (None, None) when the characters do not line up with the text."""
    solid = [c for c in text if not c.isspace()]
    if not chars or len(chars) != len(solid) or any(str(ch[0]) != c for ch, c in zip(chars, solid, strict=True)):
        return None, None
    quads = np.asarray([ch[2] for ch in chars], np.float64).reshape(-1, 4, 2)
    solid_boxes = np.stack([quads[:, :, 0].min(1), quads[:, :, 1].min(1), quads[:, :, 0].max(1),
                            quads[:, :, 1].max(1)], 1)
    boxes = np.zeros((len(text), 4), np.float64)
    scores: list[float] = []
    j = 0
    for i, c in enumerate(text):
        if c.isspace():
            left = solid_boxes[j - 1] if j else solid_boxes[0]
            right = solid_boxes[j] if j < len(solid_boxes) else left
            boxes[i] = [left[2], min(left[1], right[1]), max(left[2], right[0]), max(left[3], right[3])]
            scores.append(1.0)
        else:
            boxes[i] = solid_boxes[j]
            scores.append(float(chars[j][1]))
            j += 1
    return boxes, scores


def _rapidocr14(threads: int) -> Callable[[np.ndarray], list[RawLine]]:
    from rapidocr_onnxruntime import RapidOCR

    ocr = RapidOCR(**({"intra_op_num_threads": threads, "inter_op_num_threads": 1} if threads else {}))

    def read(bgr: np.ndarray) -> list[RawLine]:
        result, _ = ocr(bgr, return_word_box=True)
        out: list[RawLine] = []
        for item in result or []:
            quad, text, score = np.asarray(item[0], np.float64), str(item[1]), float(item[2])
            boxes: np.ndarray | None = None
            scores: list[float] | None = None
            if len(item) > 5 and item[3] and len(item[3]) == len(text) and len(item[5]) == len(text):
                cq = np.asarray(item[3], np.float64).reshape(-1, 4, 2)
                boxes = np.stack([cq[:, :, 0].min(1), cq[:, :, 1].min(1), cq[:, :, 0].max(1), cq[:, :, 1].max(1)], 1)
                scores = [float(v) for v in item[5]]
            out.append((quad, text, score, boxes, scores))
        return out

    return read


@dataclass
class _Word:
    text: str
    box: list[float]          # pixels x0, y0, x1, y1
    conf: float
    edges: list[float]        # len(text) + 1 pixel x positions


@dataclass
class _Line:
    quad: np.ndarray          # (4, 2) pixels
    words: list[_Word]


def _relative_width(c: str) -> float:
    """A character's width relative to an average one, damped halfway between a proportional font (where 'm'
    is three times 'i') and a monospaced one (receipts), since the page may be either."""
    return 1 + 0.4 * (_WIDTHS.get(c, 1.0) - 1)


_WIDTHS = {**dict.fromkeys("ijlI.,:;!|'`", 0.45), **dict.fromkeys("tfr()-[]/1", 0.7),
           **dict.fromkeys("mwMW%@", 1.5), **dict.fromkeys("ABCDEFGHKNOPQRSUVXYZ&", 1.2)}


def split_chars(chars: list[str], boxes: np.ndarray, scores: list[float]) -> list[_Word]:
    """One recognised line, character by character (``boxes`` (n, 4) pixel x0, y0, x1, y1) → words: split at
    spaces and where two character centres are more than ``GAP_PITCHES`` times further apart than the line's
    typical pitch says they should be (given the two characters' widths)."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    solid = [k for k, c in enumerate(chars) if not c.isspace()]
    pitch = math.inf
    if len(solid) >= MIN_PITCH_CHARS:
        pair = np.array([(_relative_width(chars[a]) + _relative_width(chars[b])) / 2
                         for a, b in pairwise(solid)])
        pitch = float(np.median(np.diff(cx[solid]) / pair))
    words: list[_Word] = []
    run: list[int] = []

    def close() -> None:
        if run:
            b = boxes[run]
            x0, x1 = float(b[:, 0].min()), float(b[:, 2].max())
            inner = [(float(boxes[a, 2]) + float(boxes[c, 0])) / 2 for a, c in pairwise(run)]
            words.append(_Word("".join(chars[k] for k in run), [x0, float(b[:, 1].min()), x1, float(b[:, 3].max())],
                               float(np.mean([scores[k] for k in run])), [x0, *inner, x1]))
            run.clear()

    for k, c in enumerate(chars):
        if c.isspace():
            close()
            continue
        if run:
            prev = run[-1]
            expected = pitch * (_relative_width(chars[prev]) + _relative_width(c)) / 2
            if cx[k] - cx[prev] > GAP_PITCHES * expected:
                close()
        run.append(k)
    close()
    return words


def split_line(text: str, quad: np.ndarray, score: float) -> list[_Word]:
    """A line without character geometry: words at spaces, each a share of the line box proportional to its
    characters (monospace approximation)."""
    x0, y0 = quad.min(0)
    x1, y1 = quad.max(0)
    if not text:
        return []
    per = (x1 - x0) / len(text)
    out, pos = [], 0
    for token in text.split(" "):
        if token:
            a = x0 + pos * per
            out.append(_Word(token, [a, y0, a + len(token) * per, y1], score,
                             [a + k * per for k in range(len(token) + 1)]))
        pos += len(token) + 1
    return out


def reading_order(lines: list[_Line]) -> list[list[_Line]]:
    """Lines grouped into printed rows, rows top to bottom and lines left to right. Skew-tolerant: centres are
    de-rotated by the page's median line angle before rows are formed."""
    if not lines:
        return []
    angles, weights = [], []
    for ln in lines:
        (ax, ay), (bx, by) = ln.quad[0], ln.quad[1]
        w, h = bx - ax, float(np.linalg.norm(ln.quad[3] - ln.quad[0]))
        if w > 3 * max(h, 1):
            angles.append(math.atan2(by - ay, bx - ax))
            weights.append(w)
    angle = float(np.median(angles)) if angles else 0.0
    c, s = math.cos(angle), math.sin(angle)
    items = []
    for ln in lines:
        mx, my = ln.quad.mean(0)
        y = -s * mx + c * my
        h = float(np.linalg.norm(ln.quad[3] - ln.quad[0]))
        items.append((y, c * mx + s * my, max(h, 1.0), ln))
    items.sort(key=lambda t: t[0])
    rows: list[list[tuple[float, float, float, _Line]]] = []
    for it in items:
        if rows:
            row = rows[-1]
            ref_y = float(np.mean([r[0] for r in row]))
            if abs(it[0] - ref_y) < 0.5 * min(it[2], min(r[2] for r in row)):
                row.append(it)
                continue
        rows.append([it])
    return [[r[3] for r in sorted(row, key=lambda r: r[1])] for row in rows]


def ocr_words(image: np.ndarray, engine: str = DEFAULT_ENGINE, threads: int = 0, runtime: str = "auto") -> WordTable:
    """Words on a rendered page image (RGB uint8, H×W×3), boxes in the BBox contract, in reading order, with
    line ids (printed rows), character edges and confidences from the characters' scores."""
    h, w = image.shape[:2]
    lines = []
    for quad, text, score, char_boxes, char_scores in _engine(engine, threads, runtime)(image[:, :, ::-1]):  # BGR
        if char_boxes is not None and char_scores is not None:
            words = split_chars(list(text), char_boxes, char_scores)
        else:
            words = split_line(text.strip(), quad, score)
        if words:
            lines.append(_Line(quad, words))
    texts: list[str] = []
    px: list[list[float]] = []
    conf: list[float] = []
    line_ids: list[int] = []
    edges: list[float] = []
    for row_no, row in enumerate(reading_order(lines)):
        for ln in row:
            for wd in ln.words:
                texts.append(wd.text)
                px.append(wd.box)
                conf.append(wd.conf)
                line_ids.append(row_no)
                span = max(wd.box[2] - wd.box[0], 1e-6)
                edges += [(e - wd.box[0]) / span for e in wd.edges]
    if not texts:
        return WordTable.empty("ocr")
    boxes, keep = boxes_from_pixels(np.array(px), w, h)
    ix = np.flatnonzero(keep)
    table = WordTable(texts, boxes, np.clip(np.array(conf, np.float32), 0, 1), "ocr",
                      np.array(line_ids, np.int32), np.clip(np.array(edges, np.float32), 0, 1))
    return table if len(ix) == len(texts) else table.take(ix)
