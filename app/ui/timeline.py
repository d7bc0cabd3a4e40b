"""The run page's waterfall: rows laid out from a folded trace (``projections.traces``).

Pure: given a ``Trace`` and the current time it returns one ``Row`` per span (the run, each
step, each attempt of a retried step, the finalization) with where its bar starts and how wide
its queued and running parts are, as percentages of the run's extent, and what the span
produced (``Output``: data or an ``ErrorView``) and the metadata set on it (one entry per
kind).  A span still open is drawn up to ``now``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.ui.render import iso
from projections import traces as t

#: The narrowest bar drawn, in percent, so an instant step stays visible.
MIN_WIDTH = 0.6
_OPS = {
    t.StepOp.RUN: "step.run",
    t.StepOp.SLEEP: "sleep",
    t.StepOp.WAIT_FOR_EVENT: "waitForEvent",
    t.StepOp.INVOKE: "invoke",
    t.StepOp.AI_GATEWAY: "ai",
    t.StepOp.WAIT_FOR_SIGNAL: "waitForSignal",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorView:
    name: str | None
    message: str
    stack: str | None
    #: The SDK's error code (``step_errored``, ``non_retriable_error``, ``unknown``…), if sent.
    code: str | None = None
    #: The whole error as JSON text when it has no message (then nothing else says what it was).
    raw: str | None = None
    #: Every other field the SDK sent (``cause``, ``data``…) as JSON text, so none is hidden.
    extra: str | None = None


#: The fields an ``ErrorView`` shows on their own.
_SHOWN = frozenset({"name", "message", "stack", "code"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    data: Any = None
    has_data: bool = False
    error: ErrorView | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    key: str
    name: str
    kind: str
    status: str
    depth: int
    step_id: str | None
    attempts: int
    queued_at: int
    started_at: int | None
    ended_at: int | None
    duration_ms: int | None
    left: float
    queue_width: float
    run_width: float
    output: Output | None
    #: What the step waited on or called: ``(label, value, link)`` triples.
    details: tuple[tuple[str, str, str | None], ...]
    children: tuple[Row, ...]
    metadata: tuple[t.SpanMetadata, ...] = ()


def error_view(error: Any) -> ErrorView:
    """An SDK error object (``name``, ``message``, ``stack``, ``code``…) in displayable form."""
    if not isinstance(error, dict):
        text = error if isinstance(error, str) else json.dumps(error, indent=2, default=str)
        return ErrorView(name=None, message=str(text), stack=None)
    message, name, stack = error.get("message"), error.get("name"), error.get("stack")
    code = error.get("code")
    if not message:
        raw, extra = json.dumps(error, indent=2, default=str), None
    else:
        others = {k: v for k, v in error.items() if k not in _SHOWN}
        raw, extra = None, json.dumps(others, indent=2, default=str) if others else None
    return ErrorView(
        name=None if name is None else str(name),
        message=str(message) if message else "(no message)",
        stack=None if stack is None else str(stack),
        code=None if code is None else str(code),
        raw=raw,
        extra=extra,
    )


def output_of(found: t.SpanOutput | None) -> Output | None:
    if found is None:
        return None
    if found.has_data:
        return Output(data=found.data, has_data=True)
    return Output(error=error_view(found.error))


def _details(info: t.StepInfo | None) -> tuple[tuple[str, str, str | None], ...]:
    if isinstance(info, t.SleepInfo):
        return (("sleeps until", iso(info.sleep_until), None),)
    if isinstance(info, t.WaitInfo):
        found: list[tuple[str, str, str | None]] = [("event", info.event_name, None)]
        if info.expression:
            found.append(("if", info.expression, None))
        found.append(("times out", iso(info.timeout), None))
        if info.found_event_id:
            found.append(("matched", info.found_event_id, f"/events/{info.found_event_id}"))
        if info.timed_out:
            found.append(("result", "timed out", None))
        return tuple(found)
    if isinstance(info, t.SignalInfo):
        found = [("signal", info.signal, None), ("times out", iso(info.timeout), None)]
        if info.timed_out is not None:
            found.append(("result", "timed out" if info.timed_out else "received", None))
        return tuple(found)
    if isinstance(info, t.InvokeInfo):
        event = info.triggering_event_id
        found = [("function", info.function_id, f"/functions/{info.function_id}"),
                 ("invocation event", event, f"/events/{event}")]  # fmt: skip
        if info.run_id:
            found.append(("run", info.run_id, f"/runs/{info.run_id}"))
        if info.timed_out:
            found.append(("result", "timed out", None))
        return tuple(found)
    return ()


@dataclass(frozen=True, slots=True)
class _Frame:
    start: int
    total: int

    def pct(self, ms: int) -> float:
        return max(0.0, min(100.0, (ms - self.start) * 100 / self.total))


def _row(span: t.Span, trace: t.Trace, frame: _Frame, now: int, depth: int) -> Row:
    started = span.started_at
    open_end = now if span.status in (t.SpanStatus.RUNNING, t.SpanStatus.WAITING) else None
    end = span.ended_at if span.ended_at is not None else open_end
    left = frame.pct(span.queued_at)
    begin = frame.pct(started) if started is not None else left
    stop = frame.pct(end) if end is not None and started is not None else begin
    run_width = max(stop - begin, MIN_WIDTH) if started is not None else 0.0
    queue_width = begin - left if started is not None else max(frame.pct(now) - left, 0.0)
    if span.status.is_final and started is None:
        queue_width = 0.0  # never started (cancelled while queued): no bar to draw
    duration = (end - started) if started is not None and end is not None else None
    kind = "run" if span.is_root else _OPS.get(span.step_op, "") if span.step_op else ""
    if span.step_type == "FINALIZATION":
        kind = "finalization"
    elif depth > 1:
        kind = "attempt"
    return Row(
        key=span.span_id, name=span.name, kind=kind, status=span.status.value.title(),
        depth=depth, step_id=span.step_id if depth == 1 else None, attempts=span.attempts,
        queued_at=span.queued_at, started_at=started, ended_at=span.ended_at,
        duration_ms=duration, left=round(left, 3), queue_width=round(queue_width, 3),
        run_width=round(min(run_width, 100 - begin), 3),
        output=output_of(trace.outputs.get(span.output_key)) if span.output_key else None,
        details=_details(span.step_info),
        children=tuple(_row(c, trace, frame, now, depth + 1) for c in span.children),
        metadata=span.metadata,
    )  # fmt: skip


def _latest(span: t.Span) -> int:
    times = [span.queued_at, span.started_at or 0, span.ended_at or 0]
    return max([*times, *(_latest(c) for c in span.children)])


def build(trace: t.Trace, now: int) -> Row:
    """The run's root row; its children are the steps (and their attempts)."""
    root = trace.root
    end = root.ended_at if root.ended_at is not None else now
    end = max(end, _latest(root))
    frame = _Frame(start=root.queued_at, total=max(end - root.queued_at, 1))
    return _row(root, trace, frame, now, 0)
