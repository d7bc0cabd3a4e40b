"""GraphQL run traces: ``RunTraceSpan`` built from ``projections.traces`` spans, and outputs.

``outputID`` is opaque to clients: ``base64url("<run id>:<output key>")``, so one id is enough
to find the run, refold its history and pick the output.  ``RunTraceSpanOutput.data`` is the
JSON text of the unwrapped value; an error becomes ``StepError`` (a message is required, so an
error without one is shown whole in ``stack``, as Inngest does).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from enum import Enum
from typing import Annotated, Any

import strawberry

from app.graphql.context import GqlInfo, loaders
from app.graphql.legacy_types import FunctionRun
from app.graphql.scalars import (
    ULID,
    UUID,
    Bytes,
    SpanMetadataKind,
    SpanMetadataScope,
    SpanMetadataValues,
    Time,
    Unknown,
    json_text,
    ms_time,
)
from projections import traces as t
from projections.runs import RunRow


@strawberry.enum
class RunTraceSpanStatus(Enum):
    FAILED = "FAILED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    WAITING = "WAITING"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


@strawberry.enum
class StepOp(Enum):
    INVOKE = "INVOKE"
    RUN = "RUN"
    SLEEP = "SLEEP"
    WAIT_FOR_EVENT = "WAIT_FOR_EVENT"
    AI_GATEWAY = "AI_GATEWAY"
    WAIT_FOR_SIGNAL = "WAIT_FOR_SIGNAL"


@strawberry.type
class InvokeStepInfo:
    triggeringEventID: ULID
    functionID: str
    timeout: Time
    returnEventID: ULID | None = None
    runID: ULID | None = None
    timedOut: bool | None = None


@strawberry.type
class SleepStepInfo:
    sleepUntil: Time


@strawberry.type
class WaitForEventStepInfo:
    eventName: str
    expression: str | None
    timeout: Time
    foundEventID: ULID | None = None
    timedOut: bool | None = None


@strawberry.type
class WaitForSignalStepInfo:
    signal: str
    timeout: Time
    timedOut: bool | None = None


@strawberry.type
class RunStepInfo:
    type: str | None = None


StepInfo = Annotated[
    InvokeStepInfo | SleepStepInfo | WaitForEventStepInfo | RunStepInfo | WaitForSignalStepInfo,
    strawberry.union("StepInfo"),
]


@strawberry.type
class SpanMetadata:
    """One kind of metadata on a span, its updates combined (``projections.traces``)."""

    scope: SpanMetadataScope
    kind: SpanMetadataKind
    values: SpanMetadataValues
    updatedAt: Time


@strawberry.type
class RunTraceSpan:
    row: strawberry.Private[RunRow]
    appID: UUID
    functionID: UUID
    runID: ULID
    spanID: str
    traceID: str
    groupID: str | None
    name: str
    status: RunTraceSpanStatus
    attempts: int | None
    duration: int | None
    outputID: str | None
    queuedAt: Time
    scheduledAt: Time | None
    startedAt: Time | None
    endedAt: Time | None
    childrenSpans: list[RunTraceSpan]
    stepOp: StepOp | None
    stepID: str | None
    stepInfo: StepInfo | None
    stepType: str
    isRoot: bool
    parentSpanID: str | None
    isUserland: bool
    debugPaused: bool
    skipReason: str | None
    metadata: list[SpanMetadata]

    @strawberry.field
    async def run(self, info: GqlInfo) -> FunctionRun:
        fresh = await loaders(info).run_row(self.row.run_id)
        return FunctionRun.of(fresh or self.row)


def trace_id(run_id: str) -> str:
    """32 hex digits (an OpenTelemetry trace id) derived from the run id."""
    return hashlib.sha1(f"trace:{run_id}".encode()).hexdigest()[:32]


def output_id(run_id: str, key: str) -> str:
    return base64.urlsafe_b64encode(f"{run_id}:{key}".encode()).decode().rstrip("=")


def parse_output_id(value: str) -> tuple[str, str] | None:
    """``(run id, output key)`` of an id made by ``output_id``; None if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    run_id, sep, key = raw.partition(":")
    return (run_id, key) if sep and run_id and key else None


def _step_info(info: t.StepInfo | None) -> StepInfo | None:
    if isinstance(info, t.SleepInfo):
        return SleepStepInfo(sleepUntil=ms_time(info.sleep_until))
    if isinstance(info, t.WaitInfo):
        return WaitForEventStepInfo(
            eventName=info.event_name, expression=info.expression,
            timeout=ms_time(info.timeout), timedOut=info.timed_out,
            foundEventID=ULID(info.found_event_id) if info.found_event_id else None,
        )  # fmt: skip
    if isinstance(info, t.SignalInfo):
        return WaitForSignalStepInfo(
            signal=info.signal, timeout=ms_time(info.timeout), timedOut=info.timed_out
        )
    if isinstance(info, t.InvokeInfo):
        return InvokeStepInfo(
            triggeringEventID=ULID(info.triggering_event_id), functionID=info.function_id,
            timeout=ms_time(info.timeout), timedOut=info.timed_out,
            runID=ULID(info.run_id) if info.run_id else None,
        )  # fmt: skip
    if isinstance(info, t.RunInfo):
        return RunStepInfo(type=info.type)
    return None


def _int32(ms: int | None) -> int | None:
    # GraphQL's Int is 32-bit: a span longer than ~24.8 days (a long sleep) shows the maximum.
    return None if ms is None else min(ms, 2**31 - 1)


def make_span(span: t.Span, row: RunRow) -> RunTraceSpan:
    """The GraphQL span (and its subtree) for a folded span of the run in ``row``."""
    return RunTraceSpan(
        row=row, appID=UUID(row.app_id), functionID=UUID(row.function_id),
        runID=ULID(row.run_id), spanID=span.span_id, traceID=trace_id(row.run_id),
        groupID=None, name=span.name, status=RunTraceSpanStatus[span.status.name],
        attempts=span.attempts, duration=_int32(span.duration),
        outputID=output_id(row.run_id, span.output_key) if span.output_key else None,
        queuedAt=ms_time(span.queued_at), scheduledAt=None,
        startedAt=None if span.started_at is None else ms_time(span.started_at),
        endedAt=None if span.ended_at is None else ms_time(span.ended_at),
        childrenSpans=[make_span(c, row) for c in span.children],
        stepOp=None if span.step_op is None else StepOp[span.step_op.name],
        stepID=span.step_id, stepInfo=_step_info(span.step_info), stepType=span.step_type,
        isRoot=span.is_root, parentSpanID=span.parent_span_id, isUserland=False,
        debugPaused=False, skipReason=None,
        metadata=[
            SpanMetadata(
                scope=SpanMetadataScope(m.scope), kind=SpanMetadataKind(m.kind),
                values=SpanMetadataValues(m.values), updatedAt=ms_time(m.updated_at),
            )
            for m in span.metadata
        ],
    )  # fmt: skip


async def run_trace(info: GqlInfo, row: RunRow) -> RunTraceSpan:
    """The run's whole trace, its root named after the function."""
    ld = loaders(info)
    function = await ld.function(row.function_id)
    trace = t.fold_trace(await ld.history(row.run_id), name=function.name if function else None)
    return make_span(trace.root, row)


@strawberry.type
class StepError:
    message: str
    name: str | None = None
    stack: str | None = None
    cause: Unknown | None = None


@strawberry.type
class RunTraceSpanOutput:
    input: Bytes | None = None
    data: Bytes | None = None
    error: StepError | None = None


def step_error(error: Any) -> StepError:
    if not isinstance(error, dict):
        return StepError(message=error if isinstance(error, str) else json_text(error))
    message, name, stack = error.get("message"), error.get("name"), error.get("stack")
    found = StepError(
        message=str(message) if message else "",
        name=str(name) if name is not None else None,
        stack=str(stack) if stack is not None else None,
        cause=Unknown(error["cause"]) if error.get("cause") is not None else None,
    )
    if not found.message:
        found.stack = json_text(error)
    return found


def make_output(output: t.SpanOutput) -> RunTraceSpanOutput:
    if output.has_data:
        return RunTraceSpanOutput(data=Bytes(json_text(output.data)))
    return RunTraceSpanOutput(error=step_error(output.error))
