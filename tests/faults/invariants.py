"""What must hold over a whole database after any crash: the history and the runs view agree.

``check_history_invariants(db_url)`` reads the ENTIRE ``run_history`` table and asserts, per run:
versions are exactly 1..n; the stream starts with ``RunScheduled``; each step id gets at most one
result (``StepCompleted``/``StepFailed``/``SleepCompleted``/``WaitMatched``/``WaitTimedOut``/
``InvokeCompleted``); at most one final event, and nothing after it.  It also asserts that the
``runs`` view shows the status the history ends in.  ``wait_until_final`` waits for accepted
events' runs (and every other run) to finish.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import Any

import psycopg

MEMO_TYPES = frozenset(
    {
        "StepCompleted",
        "StepFailed",
        "SleepCompleted",
        "WaitMatched",
        "WaitTimedOut",
        "InvokeCompleted",
    }
)
FINAL_STATUS = {
    "RunCompleted": "Completed",
    "RunFailed": "Failed",
    "RunCancelled": "Cancelled",
    "RunSkipped": "Skipped",
}
FINAL = frozenset(FINAL_STATUS.values())


def check_history_invariants(db_url: str) -> dict[str, list[str]]:
    """Assert the invariants over every run in the database; return each run's event types."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT run_id, version, type, payload FROM run_history ORDER BY run_id, version"
        ).fetchall()
        view = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
    by_run: dict[str, list[str]] = collections.defaultdict(list)
    results: collections.Counter[tuple[str, str]] = collections.Counter()
    problems: list[str] = []
    for run_id, version, kind, payload in rows:
        kinds = by_run[run_id]
        if version != len(kinds) + 1:
            problems.append(f"run {run_id}: version {version} follows {len(kinds)}")
        if kinds and kinds[-1] in FINAL_STATUS:
            problems.append(f"run {run_id}: {kind} (v{version}) after final {kinds[-1]}")
        kinds.append(kind)
        if kind in MEMO_TYPES:
            results[(run_id, str(payload["step_id"]))] += 1
    for run_id, kinds in by_run.items():
        if kinds[0] != "RunScheduled":
            problems.append(f"run {run_id}: starts with {kinds[0]}")
        finals = [k for k in kinds if k in FINAL_STATUS]
        if len(finals) > 1:
            problems.append(f"run {run_id}: {len(finals)} final events {finals}")
        expected = FINAL_STATUS.get(kinds[-1])
        shown = view.get(run_id)
        if expected is not None and shown != expected:
            problems.append(f"run {run_id}: history ends {kinds[-1]}, runs view says {shown}")
        if expected is None and shown in FINAL:
            problems.append(f"run {run_id}: runs view says {shown}, history is not final")
    problems += [f"run {r}: step {s} has {n} results" for (r, s), n in results.items() if n > 1]
    assert not problems, "\n".join(problems[:50])
    return dict(by_run)


def runs_by_event(db_url: str, event_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """Each event's runs as (run id, status), from the runs view."""
    ids = list(event_ids)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT e.id, r.run_id, r.status FROM unnest(%s::text[]) AS e(id)"
            " JOIN runs r ON r.event_ids @> ARRAY[e.id]",
            (ids,),
        ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for event_id, run_id, status in rows:
        out[event_id].append((run_id, status))
    return out


def unfinished(db_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT run_id, status FROM runs WHERE status <> ALL(%s::text[])", (sorted(FINAL),)
        ).fetchall()


def wait_until_final(
    db_url: str, event_ids: Iterable[str], timeout: float, runs_per_event: int = 1
) -> dict[str, list[tuple[str, str]]]:
    """Wait until every event has its runs and every run in the database has ended."""
    ids = list(event_ids)
    deadline = time.monotonic() + timeout
    state: Any = None
    while time.monotonic() < deadline:
        by_event = runs_by_event(db_url, ids)
        missing = [e for e, runs in by_event.items() if len(runs) < runs_per_event]
        open_runs = unfinished(db_url)
        # Two reads at two moments: a run can end between them, so the statuses returned
        # must themselves be final, not only the later check.
        settled = all(status in FINAL for runs in by_event.values() for _, status in runs)
        if not missing and not open_runs and settled:
            return by_event
        state = {"events without runs": missing[:10], "unfinished runs": open_runs[:10]}
        time.sleep(0.2)
    raise AssertionError(f"not everything finished within {timeout}s: {state}")
