"""A transformers encoder (a ``config.json`` + torch weights folder) as an OpenVINO model: converted once from its
torch weights (``openvino.convert_model`` on the ``AutoModel``, traced with a small example) and kept as IR under a
cache dir, keyed by the model's own files and OpenVINO's version — every later load reads the IR and imports
neither torch nor transformers' models (3.9 s of a 2-core machine's start-up for the text encoder). Written to a
temporary folder first and renamed into place, so two processes converting at once both end with a whole IR; a
cache dir that cannot be written costs only the reuse (the converted model is compiled from memory)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "pagelens-ov1"  # what a cached IR is: bump when the conversion changes
_WEIGHTS = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class Compiled:
    """A compiled encoder: ``hidden(ids, mask)`` → (n, width, dim) float32 last hidden states."""

    model: Any
    config: dict[str, Any]

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self.model({"input_ids": ids, "attention_mask": mask})
        return np.asarray(out[self.model.output(0)], dtype=np.float32)


def ir_dir(cache_dir: Path, files: Path, name: str) -> Path:
    """Where ``files``'s IR is kept: its name and a key over its config, its weights' names, sizes and times, and
    OpenVINO's version (new weights or a new OpenVINO convert again)."""
    import openvino

    h = hashlib.sha256(f"{FORMAT}|{openvino.__version__}|".encode())
    h.update((files / "config.json").read_bytes())
    for pattern in _WEIGHTS:
        for w in sorted(files.glob(pattern)):
            st = w.stat()
            h.update(f"|{w.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-60:]
    return cache_dir.expanduser() / "openvino" / f"{name}-{h.hexdigest()[:16]}"


def _convert(files: Path) -> Any:
    """The ``AutoModel`` of ``files`` as an OpenVINO model (imports torch and transformers: once per model)."""
    import openvino
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(files).eval()
    example = {"input_ids": torch.ones(2, 16, dtype=torch.long), "attention_mask": torch.ones(2, 16, dtype=torch.long)}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings on shape-dependent branches: dynamic shapes are kept
        return openvino.convert_model(model, example_input=example)


def load(files: Path, cache_dir: Path, name: str, *, threads: int = 0, bf16: bool = False) -> Compiled:
    """``files``'s encoder compiled for the CPU (``bf16``: OpenVINO's bf16 inference, on a CPU that has it),
    from the cached IR or converted now. Raises what the conversion or OpenVINO raise."""
    import openvino

    config = json.loads((files / "config.json").read_text())
    where = ir_dir(cache_dir, files, name)
    xml = where / "model.xml"
    source: Any = str(xml)
    if not xml.is_file():
        converted = _convert(files)
        source = converted
        tmp = where.with_name(f"{where.name}.tmp{os.getpid()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            openvino.save_model(converted, str(tmp / "model.xml"), compress_to_fp16=False)
            try:
                os.replace(tmp, where)
                log.info("text encoder converted to OpenVINO IR in %s", where)
            except OSError:  # another process put its IR there first: the same conversion
                pass
        except OSError as e:
            log.warning("the converted model could not be kept in %s (%s): it is converted again next time; set "
                        "PAGELENS_TEXT_ENCODER__CACHE_DIR to a writable folder", where, e)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    # not pinned: two processes on one machine (a Ray actor each, or the API beside an ingest) each pinned theirs
    # to the same cores
    props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
             "ENABLE_CPU_PINNING": "NO"}
    if threads:
        props["INFERENCE_NUM_THREADS"] = str(threads)
    return Compiled(openvino.Core().compile_model(source, "CPU", props), config)
