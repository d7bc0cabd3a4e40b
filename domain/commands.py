"""Commands: what can be asked of a run.  ``decide`` turns each into history events + effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.metadata import Target, Update
from domain.opcodes import CallResult


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRun:
    run_id: str
    function_id: str
    function_slug: str
    function_version: int
    app_id: str
    events: tuple[Any, ...]
    event_ids: tuple[str, ...]
    idempotency_key: str
    max_attempts: int
    batch_id: str | None = None
    cron: str | None = None
    priority: int = 0
    original_run_id: str | None = None
    steps: dict[str, Any] = field(default_factory=dict)
    #: Run no earlier than this (future-dated events, crons, throttle), in ms.
    not_before: int | None = None
    #: Capacity buckets every step of the run counts against: (key, limit).
    concurrency: tuple[tuple[str, int], ...] = ()
    start_timeout_ms: int | None = None
    finish_timeout_ms: int | None = None
    #: cancelOn entries: (event name, ``if`` expression or None, timeout or None).
    cancel_on: tuple[tuple[str, str | None, str | None], ...] = ()
    #: Record the run as skipped instead of starting it (e.g. a held singleton).
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """The queue item whose SDK call produced a result."""

    step_id: str
    attempt: int
    max_attempts: int
    started_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HandleCallResult:
    call: Call
    result: CallResult


@dataclass(frozen=True, slots=True, kw_only=True)
class WakeSleep:
    step_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeWait:
    step_id: str
    event: Any
    event_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeOutWait:
    """A wait for an event or a signal expired."""

    step_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeSignal:
    """``signal`` was sent to the step waiting on it, with ``data``."""

    step_id: str
    signal: str
    data: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteInvoke:
    step_id: str
    output: Any
    child_run_id: str | None = None
    timed_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkStarted:
    """The run's first SDK call is about to begin (``timeouts.start`` is measured to here)."""

    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EnforceTimeout:
    """``timeouts.start`` (not started yet) or ``timeouts.finish`` (not ended yet) expired."""

    kind: str  # "start" | "finish"


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRun:
    reason: str = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class AddMetadata:
    """``POST /v1/runs/{id}/metadata``: record ``updates`` (already validated) at ``target``;
    all of them or, over the run's limits or once it has ended, none."""

    target: Target
    updates: tuple[Update, ...]


Command = (
    ScheduleRun
    | HandleCallResult
    | WakeSleep
    | ResumeWait
    | TimeOutWait
    | ResumeSignal
    | CompleteInvoke
    | EnforceTimeout
    | MarkStarted
    | CancelRun
    | AddMetadata
)
