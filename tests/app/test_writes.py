"""The write gate: a paused ingest lets a delete of another document in, and holds one of its own documents."""

from __future__ import annotations

import threading
import time

from app.writes import WriteGate


def _write(gate: WriteGate, doc_id: str | None, log: list[str]) -> threading.Thread:
    """A short writer on its own thread: waits for the gate, then notes that it wrote."""

    def run() -> None:
        gate.acquire(doc_id)
        log.append(doc_id or "all")
        gate.release()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_short_writes_get_in_at_let_in_unless_about_a_busy_document() -> None:
    gate, log = WriteGate(), list[str]()
    with gate.long_writing({"busy"}) as let_in:
        other, mine, everything = _write(gate, "other", log), _write(gate, "busy", log), _write(gate, None, log)
        time.sleep(0.1)
        assert log == []  # the ingest holds the gate between its safe points
        let_in()
        assert log == ["other"]  # let in, and done before let_in returned
        time.sleep(0.1)
        assert log == ["other"]  # its own document and "everything" (reconcile) wait for the ingest to end
    for t in (other, mine, everything):
        t.join(5)
    assert sorted(log) == ["all", "busy", "other"]


def test_let_in_returns_at_once_when_nobody_waits() -> None:
    gate = WriteGate()
    with gate.long_writing(set()) as let_in:
        t0 = time.perf_counter()
        let_in()
        assert time.perf_counter() - t0 < 0.05
    with gate:  # released
        pass
