"""Run the real ``pagelens`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def cli_env(data_dir: Path, encoder: str | None, **extra: str) -> dict[str, str]:
    """The environment of a ``pagelens`` subprocess: its data dir, offline, SigLIP ``encoder`` (or none) and the
    text encoder off unless ``extra`` turns it on (its stage has its own tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update({"PAGELENS_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
                "COLUMNS": "200", "PAGELENS_TEXT_ENCODER__ENABLED": "false"})
    if encoder:
        env["PAGELENS_ENCODER__MODEL"] = encoder
    else:
        env["PAGELENS_ENCODER__ENABLED"] = "false"
    env.update(extra)
    return env


def pagelens(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def popen(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
