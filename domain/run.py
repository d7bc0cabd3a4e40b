"""Run state as a fold of its history: ``RunState``, ``RunStatus`` and ``evolve``.

``evolve(state, event)`` is pure and total over the history types; ``fold(events)`` replays a
whole stream.  Replaying the same history twice gives equal states, which is what makes
``stepwell replay`` and projection rebuilds trustworthy.  A state is treated as immutable by
every caller: ``evolve`` returns a copy, and only ``fold`` mutates the private copy it built.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from domain import history as h


class RunStatus(Enum):
    """Externally visible run statuses; values are persisted, never rename them."""

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED})


@dataclass(slots=True)
class RunState:
    """Everything the engine needs to know about one run, rebuilt from its history."""

    run_id: str = ""
    version: int = 0
    status: RunStatus | None = None
    function_id: str = ""
    function_slug: str = ""
    function_version: int = 0
    app_id: str = ""
    events: tuple[Any, ...] = ()
    event_ids: tuple[str, ...] = ()
    idempotency_key: str = ""
    max_attempts: int = 5
    batch_id: str | None = None
    cron: str | None = None
    priority: int = 0
    original_run_id: str | None = None
    queued_at: int | None = None
    started_at: int | None = None
    ended_at: int | None = None
    request_version: int = -1
    #: Memoized step values by step id, exactly as sent to the SDK in ``steps``.
    steps: dict[str, Any] = field(default_factory=dict)
    #: Step ids in completion order (``ctx.stack.stack``); each id at most once.
    stack: list[str] = field(default_factory=list)
    #: Parallel steps still outstanding since the last fan-out.
    pending: set[str] = field(default_factory=set)
    parallel_mode: str = "wait"
    force_step_plan: bool = False
    #: Steps parked on something other than a call:
    #: step id -> "sleep" | "wait" | "signal" | "invoke".
    waiting: dict[str, str] = field(default_factory=dict)
    output: Any = None
    error: Any = None
    #: ``RunFailed.reason``: the transport's view of the failing attempt.
    failure_reason: str | None = None
    #: Bytes of memoized step output so far (Inngest's per-run state limit applies to it).
    state_size: int = 0
    concurrency: tuple[tuple[str, int], ...] = ()
    finish_timeout_ms: int | None = None
    #: Defers by hashed id: ``fn_slug``, ``input``, ``meta``, ``status`` (AfterRun, Rejected,
    #: Aborted), ``size`` (bytes of input).  Replaced, never mutated, by ``evolve``.
    defers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Metadata recorded so far: bytes (upstream's 1 MiB per run) and updates, kept or not.
    metadata_bytes: int = 0
    metadata_count: int = 0

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def is_finished(self) -> bool:
        return self.status is not None and self.status.is_final


def evolve(state: RunState, event: h.HistoryEvent) -> RunState:
    """The state after ``event``; ``state`` itself is left untouched."""
    new = copy.copy(state)
    new.steps = dict(state.steps)
    new.stack = list(state.stack)
    new.pending = set(state.pending)
    new.waiting = dict(state.waiting)
    _apply(new, event)
    return new


def fold(events: Iterable[h.HistoryEvent], state: RunState | None = None) -> RunState:
    """Replay ``events`` in order, starting from ``state`` (or an empty run)."""
    current = RunState() if state is None else evolve(state, _NOOP)
    for event in events:
        _apply(current, event)
    return current


_NOOP = h.HistoryEvent(at=0)


def _memoize(state: RunState, step_id: str, value: Any) -> None:
    # First write wins: a step's memo is never replaced and appears once on the stack.
    if step_id in state.steps:
        return
    state.steps[step_id] = value
    state.stack.append(step_id)
    state.pending.discard(step_id)
    state.waiting.pop(step_id, None)


def _apply(state: RunState, event: h.HistoryEvent) -> None:
    if type(event) is h.HistoryEvent:
        return
    state.version += 1
    if isinstance(event, h.RunScheduled):
        _scheduled(state, event)
    elif isinstance(event, h.RunStarted):
        state.status = RunStatus.RUNNING
        state.started_at = event.at
        if event.request_version >= 0:
            state.request_version = event.request_version
    elif isinstance(event, h.SdkVersionReported):
        state.request_version = event.request_version
    elif isinstance(event, h.StepCompleted):
        if event.step_id not in state.steps:
            state.state_size += event.size
        _memoize(state, event.step_id, event.output)
    elif isinstance(event, h.StepFailed):
        _memoize(state, event.step_id, {"error": event.error})
    elif isinstance(event, h.StepsPlanned):
        state.pending.update(step_id for step_id, _ in event.steps)
        state.parallel_mode = event.parallel_mode
        state.force_step_plan = True
    elif isinstance(event, h.SleepStarted):
        state.waiting[event.step_id] = "sleep"
    elif isinstance(event, h.WaitStarted):
        state.waiting[event.step_id] = "wait"
    elif isinstance(event, h.SignalWaitStarted):
        state.waiting[event.step_id] = "signal"
    elif isinstance(event, h.InvokeStarted):
        state.waiting[event.step_id] = "invoke"
    elif isinstance(event, h.SleepCompleted | h.WaitTimedOut):
        _memoize(state, event.step_id, None)
    elif isinstance(event, h.WaitMatched):
        _memoize(state, event.step_id, event.event)
    elif isinstance(event, h.SignalReceived):
        _memoize(state, event.step_id, event.memo)
    elif isinstance(event, h.InvokeCompleted):
        _memoize(state, event.step_id, event.output)
    elif isinstance(event, _RIDE_ALONG):
        _ride_along(state, event)
    elif isinstance(event, h.DiscoveryScheduled):
        if event.clears_force_step_plan:
            state.force_step_plan = False
    elif isinstance(event, h.FINAL_TYPES):
        _finish(state, event)


_RIDE_ALONG = (h.DeferAdded, h.DeferAborted, h.MetadataAdded, h.MetadataRejected)


def _ride_along(state: RunState, event: h.HistoryEvent) -> None:
    """Records that ride along a run's steps without being steps: defers and metadata."""
    # ``defers`` is replaced, never mutated: states that share it stay as they were.
    if isinstance(event, h.DeferAdded):
        if event.step_id not in state.defers:
            state.defers = {
                **state.defers,
                event.step_id: {
                    "name": event.name,
                    "reason": event.reason,
                    "fn_slug": event.fn_slug,
                    "input": event.input,
                    "meta": event.meta,
                    "status": event.status,
                    "size": len(json.dumps(event.input, separators=(",", ":"))),
                },
            }
    elif isinstance(event, h.DeferAborted):
        found = state.defers.get(event.step_id)
        if found is not None and found["status"] == "AfterRun":
            state.defers = {**state.defers, event.step_id: {**found, "status": "Aborted"}}
    elif isinstance(event, h.MetadataAdded):
        state.metadata_bytes += event.size
        state.metadata_count += 1
    elif isinstance(event, h.MetadataRejected):
        state.metadata_count += 1


def _scheduled(state: RunState, event: h.RunScheduled) -> None:
    state.run_id = event.run_id
    state.status = RunStatus.QUEUED
    state.function_id = event.function_id
    state.function_slug = event.function_slug
    state.function_version = event.function_version
    state.app_id = event.app_id
    state.events = event.events
    state.event_ids = event.event_ids
    state.idempotency_key = event.idempotency_key
    state.max_attempts = event.max_attempts
    state.batch_id = event.batch_id
    state.cron = event.cron
    state.priority = event.priority
    state.original_run_id = event.original_run_id
    state.queued_at = event.at
    state.concurrency = event.concurrency
    state.finish_timeout_ms = event.finish_timeout_ms
    for step_id, value in event.steps.items():
        _memoize(state, step_id, value)


def _finish(state: RunState, event: h.HistoryEvent) -> None:
    state.ended_at = event.at
    state.waiting.clear()
    state.pending.clear()
    if isinstance(event, h.RunCompleted):
        state.status = RunStatus.COMPLETED
        state.output = event.output
    elif isinstance(event, h.RunFailed):
        state.status = RunStatus.FAILED
        state.error = event.error
        state.failure_reason = event.reason
    elif isinstance(event, h.RunCancelled):
        state.status = RunStatus.CANCELLED
    elif isinstance(event, h.RunSkipped):
        state.status = RunStatus.SKIPPED
