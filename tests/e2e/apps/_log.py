"""Execution log shared by the e2e SDK apps.

Every step body (and every step-less function body) appends one JSON line to
the file named by env ``STEPWELL_E2E_LOG``:

    {"fn": "sequential", "step": "a", "run_id": "01J...", "attempt": 0,
     "t": 1767225600.123, "pid": 4242}

Tests read it back with :func:`read_log` to count executions (e.g. "no step
ran more often than its retries allow, even after the server was kill -9'd").
If ``STEPWELL_E2E_LOG`` is unset, nothing is written.
"""

from __future__ import annotations

import json
import os
import time
import typing

ENV_VAR = "STEPWELL_E2E_LOG"


def record(fn: str, step: str, run_id: str, attempt: int) -> None:
    """Append one execution record (one write() on an O_APPEND fd, so lines
    from concurrent processes never interleave)."""
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    line = json.dumps(
        {
            "fn": fn,
            "step": step,
            "run_id": run_id,
            "attempt": attempt,
            "t": time.time(),
            "pid": os.getpid(),
        },
        separators=(",", ":"),
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_log(path: str | os.PathLike[str]) -> list[dict[str, typing.Any]]:
    """Parse a log file written by :func:`record` (missing file -> [])."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(ln) for ln in f if ln.strip()]
    except FileNotFoundError:
        return []


def count(
    records: list[dict[str, typing.Any]],
    *,
    fn: str | None = None,
    step: str | None = None,
    run_id: str | None = None,
) -> int:
    """Number of records matching all the given fields."""
    return sum(
        1
        for r in records
        if (fn is None or r.get("fn") == fn)
        and (step is None or r.get("step") == step)
        and (run_id is None or r.get("run_id") == run_id)
    )
