"""Run traces: ``fold_trace(history)`` turns one run's history into the span tree clients read.

Traces are not stored; they are folded from the same history rows the engine replays.  The
root span is the run; its children are one span per step in the order the run first learnt of
it (planned, started or reported), named as the user named the step, so a step id used twice
gives two spans with the same name.  A step that needed more than one attempt — or whose only
attempt failed — carries one ``Attempt N`` child per attempt (and a queued one while a retry is
pending), mirroring Inngest's grouping of retries; its ``attempts`` is the latest 0-based
attempt number.  Errors of the function body itself (discovery calls that raised) and the run's
own ending live in a last ``Finalization`` span.  Every span that has a result names it by an
output key; ``outputs`` maps those keys to unwrapped data (``{"data": X}`` gives X, a matched
wait gives the event, a received signal ``{"signal", "data"}``) or an error; the API wraps a
key with its run id into the opaque ``outputID`` that clients hand back to fetch it.

Metadata (``MetadataAdded``) lands on the span it targets — the root for run scope, the step,
or a retried attempt of it, or a span named by id — as one ``SpanMetadata`` per kind whose
values are that kind's updates combined in order (``domain.metadata.combine``), as upstream
rolls up its metadata spans.  An update for a span the trace does not have is not shown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from domain import history as h
from domain.metadata import combine

FINALIZATION = "Finalization"
#: The step id of a discovery call: an error there is the function body's, not a step's.
BODY_STEP = "step"
RUN_OUTPUT = "run"


class SpanStatus(Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"

    @property
    def is_final(self) -> bool:
        return self in _ENDED


_ENDED = frozenset(
    {SpanStatus.COMPLETED, SpanStatus.FAILED, SpanStatus.CANCELLED, SpanStatus.SKIPPED}
)


class StepOp(Enum):
    RUN = "RUN"
    SLEEP = "SLEEP"
    WAIT_FOR_EVENT = "WAIT_FOR_EVENT"
    INVOKE = "INVOKE"
    AI_GATEWAY = "AI_GATEWAY"
    WAIT_FOR_SIGNAL = "WAIT_FOR_SIGNAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SleepInfo:
    sleep_until: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitInfo:
    event_name: str
    expression: str | None
    timeout: int
    found_event_id: str | None = None
    timed_out: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalInfo:
    signal: str
    timeout: int
    timed_out: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeInfo:
    triggering_event_id: str
    function_id: str
    timeout: int
    run_id: str | None = None
    timed_out: bool | None = None


StepInfo = RunInfo | SleepInfo | WaitInfo | SignalInfo | InvokeInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanMetadata:
    """One kind of metadata on a span: its combined ``values`` as of ``updated_at`` (ms)."""

    scope: str
    kind: str
    values: dict[str, Any]
    updated_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """One node of a trace; times are epoch milliseconds."""

    span_id: str
    name: str
    status: SpanStatus
    queued_at: int
    started_at: int | None = None
    ended_at: int | None = None
    attempts: int = 0
    step_op: StepOp | None = None
    step_id: str | None = None
    step_type: str = ""
    output_key: str | None = None
    step_info: StepInfo | None = None
    children: tuple[Span, ...] = ()
    is_root: bool = False
    parent_span_id: str | None = None
    metadata: tuple[SpanMetadata, ...] = ()

    @property
    def duration(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(self.ended_at - self.started_at, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanOutput:
    """What a span produced: unwrapped ``data`` (when ``has_data``) or an ``error`` object."""

    data: Any = None
    has_data: bool = False
    error: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    run_id: str
    root: Span
    outputs: dict[str, SpanOutput]


# --- span ids and output keys ---


def span_id(run_id: str, key: str) -> str:
    """A stable 16-hex span id (the OpenTelemetry size) for ``key`` within ``run_id``."""
    return hashlib.sha1(f"{run_id}\0{key}".encode()).hexdigest()[:16]


def step_key(step_id: str) -> str:
    return f"step:{step_id}"


def attempt_key(step_id: str, attempt: int) -> str:
    return f"attempt:{step_id}:{attempt}"


# --- the fold ---


@dataclass(slots=True)
class _Attempt:
    number: int
    status: SpanStatus
    started_at: int
    ended_at: int | None
    output_key: str | None


@dataclass(slots=True)
class _Step:
    step_id: str
    name: str
    queued_at: int
    op: StepOp = StepOp.RUN
    status: SpanStatus = SpanStatus.QUEUED
    started_at: int | None = None
    ended_at: int | None = None
    info: StepInfo | None = None
    output_key: str | None = None
    attempts: list[_Attempt] = field(default_factory=list)
    #: When a failed attempt's retry is due (a queued attempt is shown until it runs).
    retry_at: int | None = None


class _Folder:
    def __init__(self) -> None:
        self.run_id = ""
        self.queued_at = 0
        self.started_at: int | None = None
        self.ended_at: int | None = None
        self.final: h.HistoryEvent | None = None
        self.last_at = 0
        self.steps: dict[str, _Step] = {}
        self.body = _Step(step_id=BODY_STEP, name=FINALIZATION, queued_at=0)
        self.outputs: dict[str, SpanOutput] = {}
        self.metadata: list[h.MetadataAdded] = []

    def step(self, step_id: str, name: str, started: int | None = None) -> _Step:
        """The step's span state, created queued at the run's previous transition."""
        found = self.steps.get(step_id)
        if found is None:
            queued = self.last_at if started is None else min(self.last_at, started)
            found = self.steps[step_id] = _Step(step_id=step_id, name=name, queued_at=queued)
        return found

    def apply(self, e: h.HistoryEvent) -> None:
        if self.body.retry_at is not None and isinstance(e, _REACHED_A_STEP):
            self.body.retry_at = None  # the body's retry ran: it got as far as a step
        handler = _HANDLERS.get(type(e))
        if handler is not None:
            handler(self, e)
        if e.at:
            self.last_at = e.at


def _scheduled(f: _Folder, e: h.RunScheduled) -> None:
    f.run_id, f.queued_at = e.run_id, e.at


def _started(f: _Folder, e: h.RunStarted) -> None:
    f.started_at = e.at


def _planned(f: _Folder, e: h.StepsPlanned) -> None:
    f.last_at = e.at  # planned steps are queued from the moment they are planned
    for step_id, name in e.steps:
        f.step(step_id, name)


def _attempt(step: _Step, attempt: _Attempt) -> None:
    step.attempts.append(attempt)
    if step.started_at is None:
        step.started_at = attempt.started_at


def _ended_step(step: _Step, status: SpanStatus, at: int, key: str | None) -> None:
    step.status, step.ended_at, step.output_key, step.retry_at = status, at, key, None


#: History ``op`` values of requests the server made for the run (``step.ai.infer``,
#: ``step.fetch``).
_GATEWAY_OPS = frozenset({"AIGateway", "Gateway"})


def _mark_gateway(step: _Step, op: str) -> None:
    if op in _GATEWAY_OPS:
        step.op = StepOp.AI_GATEWAY  # upstream shows step.fetch as AI_GATEWAY too


def _completed(f: _Folder, e: h.StepCompleted) -> None:
    step = f.step(e.step_id, e.name, e.started_at)
    _mark_gateway(step, e.op)
    key = step_key(e.step_id)
    _attempt(step, _Attempt(e.attempt, SpanStatus.COMPLETED, e.started_at, e.at, key))
    _ended_step(step, SpanStatus.COMPLETED, e.at, key)
    output = e.output
    if e.op == "StepRun" or (isinstance(output, dict) and set(output) == {"data"}):
        output = output.get("data") if isinstance(output, dict) else output
    f.outputs[key] = SpanOutput(data=output, has_data=True)


def _errored(f: _Folder, e: h.StepErrored) -> None:
    step = f.body if e.step_id == BODY_STEP else f.step(e.step_id, e.name, e.started_at)
    if step is not f.body:
        _mark_gateway(step, e.op)
    key = attempt_key(e.step_id, e.attempt)
    _attempt(step, _Attempt(e.attempt, SpanStatus.FAILED, e.started_at, e.at, key))
    step.status, step.retry_at = SpanStatus.RUNNING, e.retry_at
    f.outputs[key] = SpanOutput(error=e.error)


def _failed(f: _Folder, e: h.StepFailed) -> None:
    step = f.step(e.step_id, e.name, e.started_at)
    _mark_gateway(step, e.op)
    key = step_key(e.step_id)
    _attempt(step, _Attempt(e.attempt, SpanStatus.FAILED, e.started_at, e.at, key))
    _ended_step(step, SpanStatus.FAILED, e.at, key)
    f.outputs[key] = SpanOutput(error=e.error)


_Parking = h.SleepStarted | h.WaitStarted | h.SignalWaitStarted | h.InvokeStarted


def _parked(f: _Folder, e: _Parking, op: StepOp, info: StepInfo) -> None:
    step = f.step(e.step_id, e.name, e.at)
    step.op, step.info, step.started_at = op, info, e.at
    step.status = SpanStatus.RUNNING if op is StepOp.INVOKE else SpanStatus.WAITING


def _resolved(f: _Folder, step_id: str, at: int, status: SpanStatus, output: SpanOutput) -> None:
    step = f.steps.get(step_id)
    if step is None:
        return
    key = step_key(step_id)
    _ended_step(step, status, at, key)
    f.outputs[key] = output


def _sleep_started(f: _Folder, e: h.SleepStarted) -> None:
    _parked(f, e, StepOp.SLEEP, SleepInfo(sleep_until=e.until))


def _sleep_completed(f: _Folder, e: h.SleepCompleted) -> None:
    step = f.steps.get(e.step_id)
    if step is not None:  # a sleep yields no value, so it has no output to fetch
        step.status, step.ended_at = SpanStatus.COMPLETED, e.at


def _wait_started(f: _Folder, e: h.WaitStarted) -> None:
    info = WaitInfo(event_name=e.event_name, expression=e.expression, timeout=e.expires_at)
    _parked(f, e, StepOp.WAIT_FOR_EVENT, info)


def _wait_info(f: _Folder, step_id: str, **changes: Any) -> None:
    step = f.steps.get(step_id)
    if step is not None and isinstance(step.info, WaitInfo | SignalInfo | InvokeInfo):
        step.info = replace(step.info, **changes)


def _wait_matched(f: _Folder, e: h.WaitMatched) -> None:
    _wait_info(f, e.step_id, found_event_id=e.event_id, timed_out=False)
    # Inngest stores a matched wait's event unwrapped, and clients read it back as is.
    _resolved(f, e.step_id, e.at, SpanStatus.COMPLETED, SpanOutput(data=e.event, has_data=True))


def _wait_timed_out(f: _Folder, e: h.WaitTimedOut) -> None:
    _wait_info(f, e.step_id, timed_out=True)
    _resolved(f, e.step_id, e.at, SpanStatus.COMPLETED, SpanOutput(data=None, has_data=True))


def _signal_wait_started(f: _Folder, e: h.SignalWaitStarted) -> None:
    info = SignalInfo(signal=e.signal, timeout=e.expires_at)
    _parked(f, e, StepOp.WAIT_FOR_SIGNAL, info)


def _signal_received(f: _Folder, e: h.SignalReceived) -> None:
    _wait_info(f, e.step_id, timed_out=False)
    output = SpanOutput(data=e.memo["data"], has_data=True)
    _resolved(f, e.step_id, e.at, SpanStatus.COMPLETED, output)


def _invoke_started(f: _Folder, e: h.InvokeStarted) -> None:
    info = InvokeInfo(
        triggering_event_id=e.invoke_event_id, function_id=e.function_slug, timeout=e.expires_at
    )
    _parked(f, e, StepOp.INVOKE, info)


def _invoke_completed(f: _Folder, e: h.InvokeCompleted) -> None:
    _wait_info(f, e.step_id, run_id=e.child_run_id, timed_out=e.timed_out)
    memo = e.output if isinstance(e.output, dict) else {"data": e.output}
    if "error" in memo and "data" not in memo:
        _resolved(f, e.step_id, e.at, SpanStatus.FAILED, SpanOutput(error=memo["error"]))
    else:
        data = SpanOutput(data=memo.get("data"), has_data=True)
        _resolved(f, e.step_id, e.at, SpanStatus.COMPLETED, data)


def _metadata(f: _Folder, e: h.MetadataAdded) -> None:
    f.metadata.append(e)


def _ended(f: _Folder, e: h.HistoryEvent) -> None:
    f.final, f.ended_at = e, e.at
    if isinstance(e, h.RunCompleted):
        f.outputs[RUN_OUTPUT] = SpanOutput(data=e.output, has_data=True)
    elif isinstance(e, h.RunFailed):
        f.outputs[RUN_OUTPUT] = SpanOutput(error=e.error)


_REACHED_A_STEP = (
    h.StepCompleted,
    h.StepFailed,
    h.StepsPlanned,
    h.SleepStarted,
    h.WaitStarted,
    h.SignalWaitStarted,
    h.InvokeStarted,
)
_HANDLERS: dict[type[h.HistoryEvent], Any] = {
    h.RunScheduled: _scheduled,
    h.RunStarted: _started,
    h.StepsPlanned: _planned,
    h.StepCompleted: _completed,
    h.StepErrored: _errored,
    h.StepFailed: _failed,
    h.SleepStarted: _sleep_started,
    h.SleepCompleted: _sleep_completed,
    h.WaitStarted: _wait_started,
    h.WaitMatched: _wait_matched,
    h.WaitTimedOut: _wait_timed_out,
    h.SignalWaitStarted: _signal_wait_started,
    h.SignalReceived: _signal_received,
    h.InvokeStarted: _invoke_started,
    h.InvokeCompleted: _invoke_completed,
    h.MetadataAdded: _metadata,
    h.RunCompleted: _ended,
    h.RunFailed: _ended,
    h.RunCancelled: _ended,
    h.RunSkipped: _ended,
}


def fold_trace(history: Iterable[h.HistoryEvent], *, name: str | None = None) -> Trace:
    """The trace of the run whose whole history is ``history``; ``name`` names the root."""
    f = _Folder()
    slug = ""
    for event in history:
        if isinstance(event, h.RunScheduled):
            slug = event.function_slug
        f.apply(event)
    root_id = span_id(f.run_id, RUN_OUTPUT)
    children = [_step_span(f, s, root_id) for s in f.steps.values()]
    finalization = _finalization(f, root_id)
    if finalization is not None:
        children.append(finalization)
    root = Span(
        span_id=root_id,
        name=name or slug,
        status=_run_status(f),
        queued_at=f.queued_at,
        started_at=f.started_at,
        ended_at=f.ended_at,
        output_key=RUN_OUTPUT if RUN_OUTPUT in f.outputs else None,
        children=tuple(children),
        is_root=True,
    )
    if f.metadata:
        root = _with_metadata(root, _roll_up(f, root))
    return Trace(run_id=f.run_id, root=root, outputs=f.outputs)


def _span_ids(span: Span) -> set[str]:
    found = {span.span_id}
    for child in span.children:
        found |= _span_ids(child)
    return found


def _target(f: _Folder, e: h.MetadataAdded, root: Span, present: set[str]) -> str:
    if e.scope == "run" or e.step_id is None:
        return root.span_id
    if e.span_id is not None and e.span_id in present:
        return e.span_id
    if e.attempt is not None:
        attempt = span_id(f.run_id, attempt_key(e.step_id, e.attempt))
        if attempt in present:
            return attempt
    return span_id(f.run_id, step_key(e.step_id))


def _roll_up(f: _Folder, root: Span) -> dict[str, list[SpanMetadata]]:
    """Span id -> its metadata, one entry per kind in order of first update."""
    present = _span_ids(root)
    by_span: dict[str, dict[str, SpanMetadata]] = {}
    for e in f.metadata:
        target = _target(f, e, root, present)
        if target not in present:
            continue
        kinds = by_span.setdefault(target, {})
        found = kinds.get(e.kind)
        if found is None:
            found = SpanMetadata(scope=e.scope, kind=e.kind, values={}, updated_at=e.at)
        elif found.scope != e.scope:
            continue  # upstream skips an update whose scope differs from the kind's first
        values = combine(found.values, e.values, e.op)
        kinds[e.kind] = replace(found, values=values, updated_at=e.at)
    return {sid: list(kinds.values()) for sid, kinds in by_span.items()}


def _with_metadata(span: Span, by_span: dict[str, list[SpanMetadata]]) -> Span:
    children = tuple(_with_metadata(c, by_span) for c in span.children)
    return replace(span, children=children, metadata=tuple(by_span.get(span.span_id, ())))


def _run_status(f: _Folder) -> SpanStatus:
    if isinstance(f.final, h.RunCompleted):
        return SpanStatus.COMPLETED
    if isinstance(f.final, h.RunFailed):
        return SpanStatus.FAILED
    if isinstance(f.final, h.RunCancelled):
        return SpanStatus.CANCELLED
    if isinstance(f.final, h.RunSkipped):
        return SpanStatus.SKIPPED
    return SpanStatus.QUEUED if f.started_at is None else SpanStatus.RUNNING


def _close_open(f: _Folder, step: _Step) -> None:
    """A step still open when the run ended was abandoned with it."""
    if f.ended_at is not None and not step.status.is_final:
        step.status, step.ended_at, step.retry_at = SpanStatus.CANCELLED, f.ended_at, None


def _step_span(f: _Folder, step: _Step, parent_id: str) -> Span:
    _close_open(f, step)
    own_id = span_id(f.run_id, step_key(step.step_id))
    children = _attempt_spans(f, step, own_id)
    return Span(
        span_id=own_id,
        name=step.name,
        status=step.status,
        queued_at=step.queued_at,
        started_at=step.started_at,
        ended_at=step.ended_at if step.status.is_final else None,
        attempts=max((a.number for a in step.attempts), default=0),
        step_op=step.op,
        step_id=step.step_id,
        step_type=step.op.value,
        output_key=step.output_key,
        step_info=step.info if step.info is not None else RunInfo(),
        children=children,
        parent_span_id=parent_id,
    )


def _attempt_spans(f: _Folder, step: _Step, parent_id: str) -> tuple[Span, ...]:
    attempts = step.attempts
    if not attempts or (len(attempts) == 1 and attempts[0].status is SpanStatus.COMPLETED):
        return ()
    spans = []
    queued = step.queued_at
    for a in attempts:
        spans.append(
            Span(
                span_id=span_id(f.run_id, attempt_key(step.step_id, a.number)),
                name=f"Attempt {a.number}",
                status=a.status,
                queued_at=min(queued, a.started_at),
                started_at=a.started_at,
                ended_at=a.ended_at,
                attempts=a.number,
                step_op=step.op if step.step_id != BODY_STEP else None,
                step_id=step.step_id if step.step_id != BODY_STEP else None,
                step_type=step.op.value if step.step_id != BODY_STEP else "",
                output_key=a.output_key,
                parent_span_id=parent_id,
            )
        )
        queued = a.ended_at if a.ended_at is not None else queued
    if step.retry_at is not None and not step.status.is_final:
        number = attempts[-1].number + 1
        spans.append(
            Span(
                span_id=span_id(f.run_id, attempt_key(step.step_id, number)),
                name=f"Attempt {number}",
                status=SpanStatus.QUEUED,
                queued_at=queued,
                attempts=number,
                parent_span_id=parent_id,
            )
        )
    return tuple(spans)


def _finalization(f: _Folder, parent_id: str) -> Span | None:
    """The function body's span: its failed attempts and the run's completion or failure."""
    body = f.body
    ended_by_body = isinstance(f.final, h.RunCompleted | h.RunFailed)
    if not ended_by_body and not body.attempts:
        return None
    step_ends = [s.ended_at for s in f.steps.values() if s.ended_at is not None]
    body.queued_at = max([f.queued_at, *step_ends])
    if ended_by_body:
        assert f.final is not None
        number = body.attempts[-1].number + 1 if body.attempts else 0
        status = SpanStatus.COMPLETED if isinstance(f.final, h.RunCompleted) else SpanStatus.FAILED
        # The call that ended the run began after whatever the run did just before it.
        prior = [body.queued_at, f.started_at or 0, *(a.ended_at or 0 for a in body.attempts)]
        started = min(max(prior), f.final.at)
        _attempt(body, _Attempt(number, status, started, f.final.at, RUN_OUTPUT))
        _ended_step(body, status, f.final.at, RUN_OUTPUT)
    if body.started_at is not None:
        body.queued_at = min(body.queued_at, body.started_at)
    _close_open(f, body)
    span = _step_span(f, body, parent_id)
    return replace(span, step_op=None, step_id=None, step_type="FINALIZATION", step_info=None)
