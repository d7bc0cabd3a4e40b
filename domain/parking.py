"""Ops that park a step until something outside the call resumes it.

``sleep`` (a time), ``waitForEvent`` (a matching event), ``waitForSignal`` (``POST
/v1/signals``) and ``invoke`` (the child run's end): each records that the step started
waiting, indexes a pause (except a sleep) and queues the timeout that ends the wait if nothing
else does.  Called by ``domain.decide`` with its decision builder; pure like it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from domain import commands as c
from domain import durations
from domain import history as h
from domain.effects import CreatePause, EmitEvent
from domain.ids import deterministic_uuid
from domain.opcodes import Op
from domain.queue import ItemKind, step_job_id

if TYPE_CHECKING:
    from domain.decide import _Builder

INVOKE_DEFAULT_TIMEOUT = timedelta(days=365)
#: Inngest waits a year for a signal when the SDK gives no timeout.
SIGNAL_DEFAULT_TIMEOUT = timedelta(days=365)
#: Signals are keys of a unique index; a btree entry must stay well under a page.
MAX_SIGNAL_LENGTH = 1024
SIGNAL_CONFLICT = "Signal conflict; signal wait already exists for another run"


def pause_id(run_id: str, step_id: str) -> str:
    return deterministic_uuid(f"{run_id}{step_id}")


def _park(b: _Builder, started: h.HistoryEvent, pause: CreatePause) -> None:
    """Park the step: record ``started``, index ``pause``, and queue its timeout."""
    b.emit(started)
    b.effects.append(pause)
    b.enqueue(
        ItemKind.PAUSE_TIMEOUT,
        step_job_id(pause.run_id, "wait", pause.step_id),
        pause.step_id,
        pause.expires_at,
        pause_id=pause.pause_id,
        pause_kind=pause.kind,
    )


def deadline(b: _Builder, spec: Any, default: timedelta | None) -> int | None:
    return durations.deadline_ms(b.ctx.now_ms, spec, default)


def invalid_op(b: _Builder, op: Op, problem: object) -> None:
    # The SDK will send the same op again on every retry: fail now, with the reason.
    b.fail_run("Error", f"invalid {op.op.value} op {op.ui_name!r} from the SDK: {problem}")


def sleep(b: _Builder, op: Op) -> None:
    try:
        until = deadline(b, op.opts.get("duration") or op.name, None)
    except durations.InvalidDuration as exc:
        invalid_op(b, op, exc)
        return
    if until is None:
        b.fail_run("InngestErrTimeoutTooLong", "sleep is longer than 366 days")
        return
    b.emit(h.SleepStarted(at=b.ctx.now_ms, step_id=op.id, name=op.ui_name, until=until))
    b.enqueue(ItemKind.SLEEP, step_job_id(b.state.run_id, "sleep", op.id), op.id, until)


def wait_for_event(b: _Builder, op: Op) -> None:
    s = b.state
    try:
        expires = deadline(b, op.opts.get("timeout"), None)
    except durations.InvalidDuration as exc:
        invalid_op(b, op, exc)
        return
    if expires is None:
        b.fail_run("InngestErrTimeoutTooLong", "waitForEvent timeout is longer than 366 days")
        return
    event_name = str(op.opts.get("event") or op.name)
    raw_if = op.opts.get("if")
    try:
        expression = b.ctx.interpolate(str(raw_if), s.events[0]) if raw_if else None
    except ValueError as exc:  # the expression cannot be evaluated, now or ever
        invalid_op(b, op, exc)
        return
    pid = pause_id(s.run_id, op.id)
    _park(
        b,
        h.WaitStarted(
            at=b.ctx.now_ms,
            step_id=op.id,
            name=op.ui_name,
            event_name=event_name,
            expression=expression,
            expires_at=expires,
            pause_id=pid,
        ),
        CreatePause(
            pause_id=pid,
            run_id=s.run_id,
            step_id=op.id,
            kind="wait",
            event_name=event_name,
            expression=expression,
            expires_at=expires,
            created_at=b.ctx.now_ms,
        ),
    )


def wait_for_signal(b: _Builder, call: c.Call, op: Op) -> None:
    s = b.state
    if op.id in s.steps or s.waiting.get(op.id) == "signal":
        return  # a repeated report of a wait already resolved or in place
    signal = op.opts.get("signal")
    if not isinstance(signal, str) or not signal:
        invalid_op(b, op, "opts.signal must be a non-empty string")
        return
    if len(signal) > MAX_SIGNAL_LENGTH:
        invalid_op(b, op, f"the signal is longer than {MAX_SIGNAL_LENGTH} characters")
        return
    timeout = op.opts.get("timeout")
    try:
        expires = deadline(b, timeout, None if timeout else SIGNAL_DEFAULT_TIMEOUT)
    except durations.InvalidDuration as exc:
        invalid_op(b, op, exc)
        return
    if expires is None:
        b.fail_run("InngestErrTimeoutTooLong", "waitForSignal timeout is longer than 366 days")
        return
    on_conflict = str(op.opts.get("conflict") or "fail")
    if signal in b.ctx.signals_taken and on_conflict != "replace":
        # Inngest fails the run at once: the step shows the conflict, the run ends with it.
        error = {"name": "Error", "message": SIGNAL_CONFLICT, "error": f"Error: {SIGNAL_CONFLICT}"}
        b.emit(
            h.StepFailed(
                at=b.ctx.now_ms,
                step_id=op.id,
                name=op.ui_name,
                attempt=call.attempt,
                error=error,
                started_at=call.started_at,
            )
        )
        b.finish(h.RunFailed(at=b.ctx.now_ms, error=error))
        return
    pid = pause_id(s.run_id, op.id)
    _park(
        b,
        h.SignalWaitStarted(
            at=b.ctx.now_ms,
            step_id=op.id,
            name=op.ui_name,
            signal=signal,
            expires_at=expires,
            pause_id=pid,
            on_conflict=on_conflict,
        ),
        CreatePause(
            pause_id=pid,
            run_id=s.run_id,
            step_id=op.id,
            kind="signal",
            event_name="",  # no event resumes it: event names are never empty
            expression=None,
            expires_at=expires,
            created_at=b.ctx.now_ms,
            signal=signal,
            replace_signal=on_conflict == "replace",
        ),
    )


def invoke(b: _Builder, op: Op) -> None:
    s = b.state
    try:
        expires = deadline(b, op.opts.get("timeout"), INVOKE_DEFAULT_TIMEOUT)
    except durations.InvalidDuration as exc:
        invalid_op(b, op, exc)
        return
    assert expires is not None
    target = str(op.opts.get("function_id") or "")
    payload = op.opts.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    if not isinstance(payload.get("data") or {}, Mapping):
        invalid_op(b, op, "payload.data must be an object")
        return
    correlation = f"{s.run_id}.{op.id}"
    event_id = str(payload.get("id") or b.ctx.new_id())
    pid = pause_id(s.run_id, op.id)
    data = dict(payload.get("data") or {})
    data["_inngest"] = {
        "fn_id": target,
        "correlation_id": correlation,
        "expire": expires,
        "gid": "",
        "name": op.ui_name,
        "source_app_id": s.app_id,
        "source_fn_id": s.function_id,
        "source_fn_v": s.function_version,
    }
    event: dict[str, Any] = {
        "name": "inngest/function.invoked",
        "data": data,
        "user": payload.get("user") or {},
        "id": event_id,
        "ts": b.ctx.now_ms,
    }
    if payload.get("v"):
        event["v"] = payload["v"]
    _park(
        b,
        h.InvokeStarted(
            at=b.ctx.now_ms,
            step_id=op.id,
            name=op.ui_name,
            function_slug=target,
            correlation_id=correlation,
            invoke_event_id=event_id,
            expires_at=expires,
            pause_id=pid,
        ),
        CreatePause(
            pause_id=pid,
            run_id=s.run_id,
            step_id=op.id,
            kind="invoke",
            event_name="inngest/function.finished",
            expression=None,
            expires_at=expires,
            created_at=b.ctx.now_ms,
            source_event_id=event_id,
            correlation_id=correlation,
        ),
    )
    b.effects.append(EmitEvent(internal_id=b.ctx.new_id(), event=event))


INVOKE_TIMEOUT_ERROR = {
    "name": "InngestInvokeTimeoutError",
    "message": "Timed out waiting for invoked function to complete",
    "error": "InngestInvokeTimeoutError: Timed out waiting for invoked function to complete",
}
