"""``decide(state, command, ctx)``: the run state machine's only source of transitions.

Given a run (folded from history), a command and a context (clock, randomness, id source,
expression interpolation), ``decide`` returns the history events to append and the effects to
carry out in the same transaction.  It performs no I/O; everything that varies is in ``ctx``.

Invariants it keeps (checked by property tests): nothing follows a final status; a step's memo
is written at most once (first write wins, a late second outcome is a no-op); each decision's
events apply cleanly on top of ``state``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from domain import backoff, metadata, parking
from domain import commands as c
from domain import history as h
from domain.effects import ClearPause, Decision, Effect, Enqueue, RetryCall
from domain.lifecycle import finish_effects
from domain.opcodes import (
    GATEWAYS,
    LAZY,
    PRIORITY,
    CallFailed,
    FunctionReturned,
    GatewayOutcome,
    Op,
    Opcode,
    OpsReported,
)
from domain.parking import pause_id
from domain.queue import DISCOVERY_STEP, ItemKind, ItemSpec, step_job_id
from domain.run import RunState, evolve
from domain.schedule import schedule, score, timeout_item
from domain.sdk_errors import failure_reason, plain_error

MAX_STEPS = 1000
MAX_STATE_BYTES = 32 * 1024 * 1024
MAX_OPS_PER_RESPONSE = 1000
#: Inngest's defer limits (pkg/consts): defers per run, bytes of one input, of all inputs.
MAX_DEFERS_PER_RUN = 20
MAX_DEFER_INPUT_BYTES = 4 * 1024 * 1024
MAX_DEFER_INPUT_TOTAL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class DecideContext:
    now_ms: int
    new_id: Callable[[], str]
    rand: Callable[[], float]
    #: ``--retry-interval``: a fixed retry delay instead of the backoff table (tests).
    retry_interval_ms: int | None = None
    #: Inline ``event.*`` values of the trigger into a wait/cancel expression; raises
    #: ``ValueError`` when the result could not be evaluated (too long or too deep).
    interpolate: Callable[[str, Mapping[str, Any]], str] = lambda expr, _event: expr
    #: Signals the pause store refused to this decision before (``SignalConflict``): another
    #: run waits on them, so a wait for one fails the run unless it replaces that wait.
    signals_taken: frozenset[str] = frozenset()


def decide(state: RunState, command: c.Command, ctx: DecideContext) -> Decision:
    if isinstance(command, c.ScheduleRun):
        return schedule(state, command, ctx)
    if not state.exists or state.is_finished:
        return Decision([], [])
    b = _Builder(state, ctx)
    if isinstance(command, c.HandleCallResult):
        _handle_call(b, command)
    elif isinstance(command, c.WakeSleep):
        if b.parked(command.step_id, "sleep"):
            b.emit(h.SleepCompleted(at=ctx.now_ms, step_id=command.step_id))
            b.step_done(command.step_id)
    elif isinstance(command, c.ResumeWait):
        if b.parked(command.step_id, "wait"):
            b.emit(
                h.WaitMatched(
                    at=ctx.now_ms,
                    step_id=command.step_id,
                    event=command.event,
                    event_id=command.event_id,
                )
            )
            b.unpark(command.step_id)
    elif isinstance(command, c.TimeOutWait):
        if b.parked(command.step_id, "wait") or b.parked(command.step_id, "signal"):
            b.emit(h.WaitTimedOut(at=ctx.now_ms, step_id=command.step_id))
            b.unpark(command.step_id)
    elif isinstance(command, c.ResumeSignal):
        if b.parked(command.step_id, "signal"):
            b.emit(
                h.SignalReceived(
                    at=ctx.now_ms,
                    step_id=command.step_id,
                    signal=command.signal,
                    data=command.data,
                )
            )
            b.unpark(command.step_id)
    elif isinstance(command, c.CompleteInvoke):
        if b.parked(command.step_id, "invoke"):
            b.emit(
                h.InvokeCompleted(
                    at=ctx.now_ms,
                    step_id=command.step_id,
                    output=command.output,
                    timed_out=command.timed_out,
                    child_run_id=command.child_run_id,
                )
            )
            b.unpark(command.step_id)
    elif isinstance(command, c.MarkStarted):
        if b.state.started_at is None:
            _start(b, command.at, -1)
    elif isinstance(command, c.EnforceTimeout):
        if command.kind == "finish" or b.state.started_at is None:
            b.finish(h.RunCancelled(at=ctx.now_ms, reason=f"{command.kind} timeout"))
    elif isinstance(command, c.CancelRun):
        b.finish(h.RunCancelled(at=ctx.now_ms, reason=command.reason))
    elif isinstance(command, c.AddMetadata):
        for event in metadata.api_events(b.state, command.target, command.updates, ctx.now_ms):
            b.emit(event)
    return b.decision()


class _Builder:
    """Accumulates one decision, keeping a working state that reflects what was emitted."""

    def __init__(self, state: RunState, ctx: DecideContext) -> None:
        self.state = state
        self.ctx = ctx
        self.events: list[h.HistoryEvent] = []
        self.effects: list[Effect] = []

    def decision(self) -> Decision:
        return Decision(self.events, self.effects)

    def emit(self, event: h.HistoryEvent) -> None:
        self.events.append(event)
        self.state = evolve(self.state, event)

    def parked(self, step_id: str, kind: str) -> bool:
        return self.state.waiting.get(step_id) == kind and step_id not in self.state.steps

    def unpark(self, step_id: str) -> None:
        self.effects.append(
            ClearPause(
                pause_id=pause_id(self.state.run_id, step_id),
                timeout_job_id=step_job_id(self.state.run_id, "wait", step_id),
            )
        )
        self.step_done(step_id)

    def enqueue(self, kind: ItemKind, job_id: str, step_id: str, at: int, **payload: Any) -> None:
        s = self.state
        self.effects.append(
            Enqueue(
                item=ItemSpec(
                    kind=kind,
                    job_id=job_id,
                    available_at=at,
                    run_id=s.run_id,
                    function_id=s.function_id,
                    payload={"step_id": step_id, **payload},
                    max_attempts=s.max_attempts,
                    score=score(s.run_id, s.priority, at, self.ctx.now_ms),
                    concurrency=s.concurrency if kind is ItemKind.EDGE else (),
                )
            )
        )

    def discover(self, job_id: str) -> None:
        self.enqueue(ItemKind.EDGE, job_id, DISCOVERY_STEP, self.ctx.now_ms)

    def step_done(self, step_id: str) -> None:
        """A step has its memo: call the SDK again unless parallel siblings are outstanding."""
        s = self.state
        if s.pending and s.parallel_mode != "race":
            return
        if s.force_step_plan and not s.pending and s.request_version >= 2:
            self.emit(h.DiscoveryScheduled(at=self.ctx.now_ms, clears_force_step_plan=True))
        self.discover(step_job_id(s.run_id, "next", step_id))

    def finish(self, final: h.HistoryEvent) -> None:
        self.emit(final)
        self.effects.extend(finish_effects(self.state, self.ctx.new_id, self.ctx.now_ms))

    def fail_run(self, name: str, message: str) -> None:
        self.finish(h.RunFailed(at=self.ctx.now_ms, error=plain_error(name, message)))


def _handle_call(b: _Builder, cmd: c.HandleCallResult) -> None:
    call, result = cmd.call, cmd.result
    if b.state.started_at is None:
        _start(b, call.started_at, result.request_version)
    elif b.state.request_version < 0 <= result.request_version:
        b.emit(h.SdkVersionReported(at=b.ctx.now_ms, request_version=result.request_version))
    if isinstance(result, FunctionReturned):
        b.finish(h.RunCompleted(at=b.ctx.now_ms, output=result.output))
    elif isinstance(result, CallFailed):
        _call_failed(b, call, result)
    elif isinstance(result, OpsReported):
        _handle_ops(b, call, result)


def _start(b: _Builder, at: int, request_version: int) -> None:
    b.emit(h.RunStarted(at=at, request_version=request_version))
    if b.state.finish_timeout_ms is not None:
        b.effects.append(
            Enqueue(item=timeout_item(b.state, "finish", at + b.state.finish_timeout_ms))
        )


def _retry_time(b: _Builder, attempt: int, retry_after_ms: int | None) -> int:
    if retry_after_ms is not None:
        return retry_after_ms
    return backoff.retry_at(attempt, b.ctx.now_ms, b.ctx.rand, b.ctx.retry_interval_ms)


def _call_failed(b: _Builder, call: c.Call, result: CallFailed) -> None:
    if backoff.should_retry(call.attempt, b.state.max_attempts, not result.retryable):
        retry_at = _retry_time(b, call.attempt, result.retry_after_ms)
        b.emit(
            h.StepErrored(
                at=b.ctx.now_ms,
                step_id=call.step_id,
                name=call.step_id,
                attempt=call.attempt,
                error=dict(result.error),
                retry_at=retry_at,
                started_at=call.started_at,
            )
        )
        b.effects.append(RetryCall(available_at=retry_at, attempt=call.attempt + 1))
    else:
        b.finish(h.RunFailed(at=b.ctx.now_ms, error=dict(result.error), reason=result.reason))


def _handle_ops(b: _Builder, call: c.Call, result: OpsReported) -> None:
    ops = [op for op in result.ops if op.op is not Opcode.NONE]
    if not ops:
        if result.ops and all(not op.id for op in result.ops):
            b.discover(step_job_id(b.state.run_id, "redrive", call.step_id))
        return
    if len(ops) > MAX_OPS_PER_RESPONSE:
        b.fail_run("InngestErrFunctionOverflowed", "too many steps reported in one response")
        return
    ops.sort(key=lambda op: op.op not in PRIORITY)  # stable: waits first, order kept
    real = [op for op in ops if op.op not in LAZY]
    if len(real) > 1:
        mode = next(
            (str(op.opts.get("parallelMode")) for op in real if op.opts.get("parallelMode")), "wait"
        )
        b.emit(
            h.StepsPlanned(
                at=b.ctx.now_ms,
                steps=tuple((op.id, op.ui_name) for op in real),
                parallel_mode="race" if mode == "race" else "wait",
            )
        )
    for op in ops:
        if b.state.is_finished:
            return
        before = len(b.events)
        _handle_op(b, call, result, op)
        if op.metadata:
            _op_metadata(b, call, op, b.events[before:])
    if not real and not b.state.is_finished:
        # Lazy ops ride along with a step that moves the run on; alone (an SDK bug), nothing
        # would call the SDK again: ask it to run on, as upstream's fallback does.
        b.discover(step_job_id(b.state.run_id, "lazy", call.step_id))


#: The id the TS SDK gives the function's own end when it must ship it as an op (hashed
#: "complete"): with lazy ops to deliver, a return becomes RunComplete and a throw StepError or
#: StepFailed under this id.
COMPLETE_STEP_ID = hashlib.sha1(b"complete").hexdigest()


#: Ops whose memo is written while handling the response that reported them.
_MEMOIZED_NOW = frozenset(
    {Opcode.STEP_RUN, Opcode.STEP, Opcode.STEP_ERROR, Opcode.STEP_FAILED, *GATEWAYS}
)


def _handle_op(b: _Builder, call: c.Call, result: OpsReported, op: Op) -> None:
    now = b.ctx.now_ms
    if op.id == COMPLETE_STEP_ID and op.op in (Opcode.STEP_ERROR, Opcode.STEP_FAILED):
        # The function itself threw: exactly as if it had answered with the error.
        error = (
            op.error
            if isinstance(op.error, Mapping)
            else {"name": "Error", "message": str(op.error)}
        )
        retryable = op.op is Opcode.STEP_ERROR and not result.no_retry
        failed = CallFailed(
            error=error,
            reason=failure_reason(500, not retryable),  # what its plain answer would say
            retryable=retryable,
            retry_after_ms=result.retry_after_ms,
        )
        _call_failed(b, call, failed)
        return
    if op.op in _MEMOIZED_NOW and len(b.state.steps) >= MAX_STEPS:
        b.fail_run("InngestErrFunctionOverflowed", f"function exceeded {MAX_STEPS} steps")
        return
    if op.op in (Opcode.STEP_RUN, Opcode.STEP):
        _complete(b, call, op, {"data": op.data} if op.op is Opcode.STEP_RUN else op.data)
    elif op.op is Opcode.STEP_ERROR:
        _step_error(b, call, result, op)
    elif op.op is Opcode.STEP_FAILED:
        _step_failed(b, call, op, op.error)
    elif op.op is Opcode.STEP_PLANNED:
        b.enqueue(
            ItemKind.EDGE,
            step_job_id(b.state.run_id, "plan", op.id),
            op.id,
            now - 1,
            name=op.ui_name,
        )
    elif op.op is Opcode.SLEEP:
        parking.sleep(b, op)
    elif op.op is Opcode.WAIT_FOR_EVENT:
        parking.wait_for_event(b, op)
    elif op.op is Opcode.WAIT_FOR_SIGNAL:
        parking.wait_for_signal(b, call, op)
    elif op.op is Opcode.INVOKE_FUNCTION:
        parking.invoke(b, op)
    elif op.op in (Opcode.RUN_COMPLETE, Opcode.SYNC_RUN_COMPLETE):
        b.finish(h.RunCompleted(at=now, output=op.data))
    elif op.op is Opcode.DISCOVERY_REQUEST:
        b.discover(step_job_id(b.state.run_id, "discovery", op.id or call.step_id))
    elif op.op is Opcode.DEFER_ADD:
        _defer_add(b, op)
    elif op.op is Opcode.DEFER_ABORT:
        target = str(op.opts.get("target_hashed_id") or "")
        found = b.state.defers.get(target)
        if found is not None and found["status"] == "AfterRun":
            b.emit(h.DeferAborted(at=now, step_id=target))
    elif op.op in GATEWAYS:
        _gateway(b, call, result, op)


def _op_metadata(b: _Builder, call: c.Call, op: Op, emitted: list[h.HistoryEvent]) -> None:
    """Record the metadata riding on ``op`` in the same transition as the op's own outcome —
    only if it had one (a duplicate report records nothing, so nothing is recorded twice)."""
    own = [e for e in emitted if getattr(e, "step_id", None) == op.id]
    if not own or b.state.is_finished:
        return
    retried = any(isinstance(e, h.StepErrored) for e in own)
    attempt = call.attempt if retried else None
    for event in metadata.op_events(b.state, op.id, attempt, op.metadata, b.ctx.now_ms):
        b.emit(event)


def _defer_add(b: _Builder, op: Op) -> None:
    """Record a ``defer()`` as upstream does: accepted, or rejected (and kept) with a reason.

    A rejected defer never fails the run: the run goes on without it.  Over the per-run count
    nothing is recorded (the SDK reports it again, and it is refused again).
    """
    defers = b.state.defers
    if not op.id or op.id in defers:
        return  # first report wins; the SDK is told of it in ``defers`` and stops sending it
    if len(defers) >= MAX_DEFERS_PER_RUN:
        return
    fn_slug = op.opts.get("fn_slug")
    value, meta = op.opts.get("input"), op.opts.get("meta")
    reason = ""
    if not isinstance(fn_slug, str) or not fn_slug:
        reason, fn_slug = "invalid_opts", ""
    elif not isinstance(value, Mapping):
        reason = "invalid_input"
    elif meta is not None and not isinstance(meta, Mapping):
        reason = "invalid_meta"
    else:
        size = len(json.dumps(value, separators=(",", ":")))
        if size > MAX_DEFER_INPUT_BYTES:
            reason = "per_defer_size"
        else:
            total = sum(d["size"] for d in defers.values() if d["status"] == "AfterRun")
            if total + size > MAX_DEFER_INPUT_TOTAL_BYTES:
                reason = "aggregate_size"
    b.emit(
        h.DeferAdded(
            at=b.ctx.now_ms,
            step_id=op.id,
            name=op.ui_name,
            fn_slug=fn_slug,
            input=None if reason else value,
            meta=None if reason else meta,
            status="Rejected" if reason else "AfterRun",
            reason=reason,
        )
    )


def _complete(b: _Builder, call: c.Call, op: Op, output: Any) -> None:
    """Record a step's memo, unless it has one (first write wins) or it would overflow."""
    if op.id in b.state.steps:
        return  # already recorded: a duplicate report is a no-op
    size = len(json.dumps(output, separators=(",", ":")))
    if b.state.state_size + size > MAX_STATE_BYTES:
        b.fail_run(
            "InngestErrStateOverflowed",
            f"The function run exceeded the state size limit of {MAX_STATE_BYTES} bytes.",
        )
        return
    b.emit(
        h.StepCompleted(
            at=b.ctx.now_ms,
            step_id=op.id,
            name=op.ui_name,
            output=output,
            attempt=call.attempt,
            started_at=call.started_at,
            op=op.op.value,
            size=size,
        )
    )
    b.step_done(op.id)


def _gateway(b: _Builder, call: c.Call, result: OpsReported, op: Op) -> None:
    """The server made the op's request (see ``app/drivers/gateway.py``): memoize its outcome.

    As upstream: success is ``{"data": …}``; a failed request (or, for AI, a non-2xx answer)
    retries the call — the SDK reports the op again and the request is made again — while
    attempts remain, and on the last one is memoized as ``{"error": …}`` for the SDK to throw.
    """
    if op.id in b.state.steps:
        return
    outcome = result.performed.get(op.id)
    if outcome is None:  # no request was made for it (not expected): try again, as a failure
        name = "AIGatewayError" if op.op is Opcode.AI_GATEWAY else "GatewayError"
        outcome = GatewayOutcome(error={"name": name, "message": "the request was not made"})
    if outcome.error is None:
        _complete(b, call, op, {"data": outcome.data})
    else:
        _step_error(b, call, result, op, outcome.error)


def _step_error(b: _Builder, call: c.Call, result: OpsReported, op: Op, error: Any = None) -> None:
    error = op.error if error is None else error
    if not isinstance(error, Mapping):
        error = {"name": "Error", "message": str(error)}
    if backoff.should_retry(call.attempt, b.state.max_attempts, result.no_retry):
        # Several ops of one response may fail: the call is retried once, at one time.
        retry = next((e for e in b.effects if isinstance(e, RetryCall)), None)
        retry_at = (
            retry.available_at
            if retry is not None
            else _retry_time(b, call.attempt, result.retry_after_ms)
        )
        b.emit(
            h.StepErrored(
                at=b.ctx.now_ms,
                step_id=op.id,
                name=op.ui_name,
                attempt=call.attempt,
                error=dict(error),
                retry_at=retry_at,
                started_at=call.started_at,
                op=op.op.value,
            )
        )
        if retry is None:
            b.effects.append(RetryCall(available_at=retry_at, attempt=call.attempt + 1))
    else:
        _step_failed(b, call, op, error)


def _step_failed(b: _Builder, call: c.Call, op: Op, error: Any) -> None:
    if op.id in b.state.steps:
        return
    b.emit(
        h.StepFailed(
            at=b.ctx.now_ms,
            step_id=op.id,
            name=op.ui_name,
            attempt=call.attempt,
            error=error,
            started_at=call.started_at,
            op=op.op.value,
        )
    )
    b.step_done(op.id)
