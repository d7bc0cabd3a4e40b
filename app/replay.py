"""``stepwell replay RUN_ID``: a run's history as a timeline, and its state after any transition.

Reads the run's ``run_history`` rows, decodes them with the codec and folds them with
``domain.run.fold`` — the same code that loads a run for the engine, so what is printed is what
the engine would see.  ``--state-after N`` prints the ``RunState`` after transition N (0 is the
empty state before the first); ``--json`` prints machine-readable output instead of text.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from app.store.db import AsyncConn
from domain import history as h
from domain.codec import decode
from domain.ids import is_ulid
from domain.run import RunState, fold

# The stored envelope too (position, recorded time), which ``load_history`` does not return.
LOAD_TIMELINE = """
SELECT version, position, recorded_at, type, schema_version, payload
  FROM run_history
 WHERE run_id = %s
 ORDER BY version
"""

PREVIEW_CHARS = 72


class ReplayError(Exception):
    """The run cannot be replayed as asked (unknown run, transition out of range)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    version: int
    position: int
    recorded_at: datetime
    event: h.HistoryEvent


async def load_timeline(conn: AsyncConn, run_id: str) -> list[Transition]:
    if not is_ulid(run_id):
        raise ReplayError(f"invalid run id {run_id!r}: not a ULID")
    cur = await conn.execute(LOAD_TIMELINE, (run_id.upper(),))
    rows = await cur.fetchall()
    if not rows:
        raise ReplayError(f"run {run_id} not found")
    return [
        Transition(version=r[0], position=r[1], recorded_at=r[2], event=decode(r[3], r[4], r[5]))
        for r in rows
    ]


def state_after(timeline: Sequence[Transition], n: int) -> RunState:
    if not 0 <= n <= len(timeline):
        raise ReplayError(f"--state-after must be between 0 and {len(timeline)}, got {n}")
    return fold(t.event for t in timeline[:n])


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def state_json(state: RunState) -> dict[str, Any]:
    """``RunState`` as JSON-able data (enums by value, sets sorted)."""
    return {f.name: _plain(getattr(state, f.name)) for f in dataclasses.fields(state)}


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _preview(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _error(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('name') or 'Error'}: {error.get('message') or ''}".rstrip(": ")
    return _preview(error)


def summary(event: h.HistoryEvent) -> str:
    """One line saying what the transition did."""
    if isinstance(event, h.RunScheduled):
        names = ", ".join(str(e.get("name")) for e in event.events if isinstance(e, dict))
        return f"{event.function_slug} v{event.function_version} by {names or 'no event'}"
    if isinstance(event, h.RunStarted):
        return "first SDK call" + (
            f" (request version {event.request_version})" if event.request_version >= 0 else ""
        )
    if isinstance(event, h.StepCompleted | h.RunCompleted):
        return f"output {_preview(event.output)}"
    if isinstance(event, h.StepErrored):
        return f"{_error(event.error)}; retry at {_time(event.retry_at)}"
    if isinstance(event, h.StepFailed | h.RunFailed):
        return _error(event.error)
    if isinstance(event, h.StepsPlanned):
        return f"{len(event.steps)} steps in parallel ({event.parallel_mode}): " + ", ".join(
            name for _, name in event.steps
        )
    if isinstance(event, h.SleepStarted):
        return f"until {_time(event.until)}"
    if isinstance(event, h.WaitStarted):
        cond = f" if {event.expression}" if event.expression else ""
        return f"for {event.event_name}{cond}, until {_time(event.expires_at)}"
    if isinstance(event, h.WaitMatched):
        return f"matched event {event.event_id}"
    if isinstance(event, h.SignalWaitStarted):
        return f"for signal {event.signal!r}, until {_time(event.expires_at)}"
    if isinstance(event, h.SignalReceived):
        return f"received signal {event.signal!r}: {_preview(event.data)}"
    if isinstance(event, h.InvokeStarted):
        return f"invoked {event.function_slug}, until {_time(event.expires_at)}"
    if isinstance(event, h.InvokeCompleted):
        return "timed out" if event.timed_out else f"output {_preview(event.output)}"
    if isinstance(event, h.RunCancelled | h.RunSkipped):
        return event.reason
    if isinstance(event, h.DiscoveryScheduled):
        return "parallel steps joined" if event.clears_force_step_plan else "discovery"
    if isinstance(event, h.SleepCompleted | h.WaitTimedOut):
        return "woke up" if isinstance(event, h.SleepCompleted) else "timed out"
    if isinstance(event, h.MetadataAdded):
        return f"{event.scope} metadata {event.kind} {event.op} {_preview(event.values)}"
    if isinstance(event, h.MetadataRejected):
        return f"metadata {event.kind} rejected: {event.reason}"
    return ""


def step_of(event: h.HistoryEvent) -> str:
    """``name (id)`` of the step the transition concerns, or ``""``."""
    step_id = getattr(event, "step_id", "")
    name = getattr(event, "name", "")
    if not step_id:
        return ""
    return f"{name} ({step_id})" if name and name != step_id else step_id


def transition_json(t: Transition) -> dict[str, Any]:
    return {
        "version": t.version,
        "position": t.position,
        "at": _time(t.event.at),
        "recorded_at": t.recorded_at.astimezone(UTC).isoformat(),
        "type": type(t.event).__name__,
        "step_id": getattr(t.event, "step_id", None),
        "step": getattr(t.event, "name", None) if hasattr(t.event, "step_id") else None,
        "attempt": getattr(t.event, "attempt", None),
        "summary": summary(t.event),
    }


def render_timeline(run_id: str, timeline: Sequence[Transition]) -> str:
    """The timeline as aligned text, one transition per line, then the final status."""
    rows = [
        (
            str(t.version),
            _time(t.event.at),
            type(t.event).__name__,
            step_of(t.event),
            str(getattr(t.event, "attempt", "")),
            summary(t.event),
        )
        for t in timeline
    ]
    header = ("#", "time", "transition", "step", "attempt", "outcome")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = [f"run {run_id}"]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[5]]).rstrip())
    final = fold(t.event for t in timeline)
    status = final.status.value if final.status else "unknown"
    lines.append(f"status: {status} after {len(timeline)} transitions")
    return "\n".join(lines)


async def replay(conn: AsyncConn, run_id: str, *, state_after_n: int | None, as_json: bool) -> str:
    """What ``stepwell replay`` prints."""
    timeline = await load_timeline(conn, run_id)
    run_id = run_id.upper()
    if state_after_n is not None:
        state = state_after(timeline, state_after_n)
        doc = {
            "run_id": run_id,
            "after": state_after_n,
            "transition": type(timeline[state_after_n - 1].event).__name__
            if state_after_n
            else None,
            "state": state_json(state),
        }
        return json.dumps(doc, default=str, indent=None if as_json else 2)
    if as_json:
        doc = {
            "run_id": run_id,
            "transitions": [transition_json(t) for t in timeline],
            "state": state_json(fold(t.event for t in timeline)),
        }
        return json.dumps(doc, default=str)
    return render_timeline(run_id, timeline)
