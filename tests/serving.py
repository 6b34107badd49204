"""Helpers for tests that start a real server process: wait until it is ready, or say why it is not."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[str], what: str, timeout_s: float = 60) -> None:
    """Poll ``ready`` until it is true; fail with the process's output when it dies, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"{what} died: {proc.stdout.read()[-2000:] if proc.stdout else ''}")
        assert time.monotonic() < deadline, f"{what} did not start in {timeout_s:g} s"
        time.sleep(0.2)


def answers(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2).status_code == 200


def text_pdf(path: Path, lines: list[str], size: tuple[float, float] = (300, 400)) -> Path:
    """A PDF with one page per line of text (a real text layer)."""
    import pymupdf

    doc = pymupdf.open()
    for line in lines:
        doc.new_page(width=size[0], height=size[1]).insert_text((20, 40), line)
    doc.save(path)
    return path
