"""``decide`` for ``step.waitForSignal``: the wait, its resumption, its timeout, the conflict
rule (as the pause store reports it through ``signals_taken``), and the trace it folds into."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from domain import commands as c
from domain import history as h
from domain.codec import decode, encode
from domain.decide import Decision, decide
from domain.effects import ClearPause, CreatePause, Enqueue, FinishRun
from domain.opcodes import OpsReported, parse_ops
from domain.parking import SIGNAL_CONFLICT
from domain.queue import ItemKind
from domain.run import RunState, RunStatus, fold
from projections import traces as t
from tests.unit.test_run_state import T0, call, ctx, run_through, schedule

YEAR_MS = 365 * 24 * 3600 * 1000


def wait_op(signal: Any = "order-42", **opts: Any) -> OpsReported:
    raw = {
        "id": "w",
        "op": "WaitForSignal",
        "name": signal,
        "displayName": "wait for payment",
        "opts": {"signal": signal, **opts},
    }
    return OpsReported(ops=parse_ops([raw]), request_version=2)


def waiting(**opts: Any) -> tuple[RunState, Decision]:
    state, _ = run_through(schedule())
    decision = decide(state, c.HandleCallResult(call=call(), result=wait_op(**opts)), ctx())
    return fold(decision.events, state), decision


def test_a_wait_for_a_signal_parks_the_step_on_a_signal_pause_with_a_timeout_item() -> None:
    state, decision = waiting(timeout="30s", conflict="fail")
    [started] = [e for e in decision.events if isinstance(e, h.SignalWaitStarted)]
    assert (started.signal, started.name, started.expires_at) == (
        "order-42",
        "wait for payment",
        T0 + 30_000,
    )
    [pause] = [e for e in decision.effects if isinstance(e, CreatePause)]
    assert pause.kind == "signal" and pause.signal == "order-42" and not pause.replace_signal
    assert pause.event_name == ""  # no event can resume it: event names are never empty
    [timeout] = [e.item for e in decision.effects if isinstance(e, Enqueue)]
    assert timeout.kind is ItemKind.PAUSE_TIMEOUT and timeout.available_at == T0 + 30_000
    assert timeout.payload["pause_kind"] == "signal"
    assert state.waiting == {"w": "signal"} and "w" not in state.steps


def test_without_a_timeout_the_signal_is_awaited_for_a_year() -> None:
    _, decision = waiting()
    [pause] = [e for e in decision.effects if isinstance(e, CreatePause)]
    assert pause.expires_at == T0 + YEAR_MS


def test_conflict_replace_asks_the_store_to_take_the_signal_over() -> None:
    _, decision = waiting(conflict="replace")
    [pause] = [e for e in decision.effects if isinstance(e, CreatePause)]
    assert pause.replace_signal


def test_a_sent_signal_resolves_the_step_with_signal_and_data_once() -> None:
    state, _ = waiting(timeout="1h")
    sent = c.ResumeSignal(step_id="w", signal="order-42", data={"paid": True})
    decision = decide(state, sent, ctx())
    [clear] = [e for e in decision.effects if isinstance(e, ClearPause)]
    assert clear.timeout_job_id.endswith("w")
    assert [e.item.kind for e in decision.effects if isinstance(e, Enqueue)] == [ItemKind.EDGE]
    state = fold(decision.events, state)
    assert state.steps["w"] == {"data": {"signal": "order-42", "data": {"paid": True}}}
    assert state.waiting == {}
    # First write wins: a second signal and the timeout find nothing left to do.
    assert decide(state, sent, ctx()).is_empty
    assert decide(state, c.TimeOutWait(step_id="w"), ctx()).is_empty


def test_a_timed_out_signal_wait_resolves_the_step_with_null() -> None:
    state, _ = waiting(timeout="1s")
    decision = decide(state, c.TimeOutWait(step_id="w"), ctx(T0 + 1_000))
    assert [type(e) for e in decision.events] == [h.WaitTimedOut]
    state = fold(decision.events, state)
    assert state.steps == {"w": None}
    late = c.ResumeSignal(step_id="w", signal="order-42", data=1)
    assert decide(state, late, ctx()).is_empty


def test_a_signal_for_a_step_not_waiting_on_one_decides_nothing() -> None:
    state, _ = run_through(schedule())
    assert decide(state, c.ResumeSignal(step_id="w", signal="s", data=None), ctx()).is_empty
    sleep = OpsReported(
        ops=parse_ops([{"id": "w", "op": "Sleep", "name": "1h", "opts": {"duration": "1h"}}])
    )
    state = fold(decide(state, c.HandleCallResult(call=call(), result=sleep), ctx()).events, state)
    assert decide(state, c.ResumeSignal(step_id="w", signal="s", data=None), ctx()).is_empty


def test_a_taken_signal_fails_the_run_with_inngests_conflict_error() -> None:
    state, _ = run_through(schedule())
    taken = dataclasses.replace(ctx(), signals_taken=frozenset({"order-42"}))
    result = wait_op(conflict="fail")
    decision = decide(state, c.HandleCallResult(call=call(), result=result), taken)
    assert not any(isinstance(e, CreatePause | Enqueue) for e in decision.effects)
    assert any(isinstance(e, FinishRun) for e in decision.effects)
    [step_failed] = [e for e in decision.events if isinstance(e, h.StepFailed)]
    [run_failed] = [e for e in decision.events if isinstance(e, h.RunFailed)]
    assert step_failed.step_id == "w" and run_failed.error == step_failed.error
    assert run_failed.error["message"] == SIGNAL_CONFLICT
    assert fold(decision.events, state).status is RunStatus.FAILED


def test_a_taken_signal_does_not_stop_a_wait_that_replaces() -> None:
    state, _ = run_through(schedule())
    taken = dataclasses.replace(ctx(), signals_taken=frozenset({"order-42"}))
    result = wait_op(conflict="replace")
    decision = decide(state, c.HandleCallResult(call=call(), result=result), taken)
    [pause] = [e for e in decision.effects if isinstance(e, CreatePause)]
    assert pause.replace_signal
    assert not any(isinstance(e, h.RunFailed) for e in decision.events)


def test_another_taken_signal_does_not_concern_this_wait() -> None:
    state, _ = run_through(schedule())
    taken = dataclasses.replace(ctx(), signals_taken=frozenset({"someone-else"}))
    decision = decide(state, c.HandleCallResult(call=call(), result=wait_op()), taken)
    assert any(isinstance(e, CreatePause) for e in decision.effects)


@pytest.mark.parametrize(
    ("signal", "opts", "problem"),
    [
        ("", {}, "opts.signal must be a non-empty string"),
        (7, {}, "opts.signal must be a non-empty string"),
        ("x" * 1025, {}, "longer than 1024 characters"),
        ("s", {"timeout": "soon"}, "invalid duration"),
    ],
)
def test_an_unusable_wait_fails_the_run_with_the_reason(
    signal: Any, opts: dict[str, Any], problem: str
) -> None:
    state, _ = run_through(schedule())
    result = wait_op(signal, **opts)
    decision = decide(state, c.HandleCallResult(call=call(), result=result), ctx())
    [failed] = [e for e in decision.events if isinstance(e, h.RunFailed)]
    assert problem in failed.error["message"]
    assert not any(isinstance(e, CreatePause) for e in decision.effects)


def test_a_timeout_past_the_horizon_fails_the_run() -> None:
    state, _ = run_through(schedule())
    result = wait_op(timeout="400d")
    decision = decide(state, c.HandleCallResult(call=call(), result=result), ctx())
    [failed] = [e for e in decision.events if isinstance(e, h.RunFailed)]
    assert failed.error["name"] == "InngestErrTimeoutTooLong"


def test_signal_history_events_survive_the_codec() -> None:
    started = h.SignalWaitStarted(
        at=T0, step_id="w", name="n", signal="s", expires_at=T0 + 1, pause_id="p"
    )
    received = h.SignalReceived(at=T0, step_id="w", signal="s", data={"a": [1, None]})
    for event in (started, received):
        assert decode(*encode(event)) == event
    assert "memo" not in encode(received).payload


def test_the_trace_shows_the_step_waiting_for_the_signal_then_completed() -> None:
    _, history = run_through(
        schedule(), c.HandleCallResult(call=call(), result=wait_op(timeout="1h"))
    )
    [step] = t.fold_trace(history).root.children
    assert step.status is t.SpanStatus.WAITING and step.step_op is t.StepOp.WAIT_FOR_SIGNAL
    assert step.step_info == t.SignalInfo(signal="order-42", timeout=T0 + 3_600_000)
    assert step.name == "wait for payment"

    received = h.SignalReceived(at=T0 + 50, step_id="w", signal="order-42", data=[1, 2])
    trace = t.fold_trace([*history, received])
    [step] = trace.root.children
    assert step.status is t.SpanStatus.COMPLETED and step.ended_at == T0 + 50
    assert isinstance(step.step_info, t.SignalInfo) and step.step_info.timed_out is False
    assert step.output_key is not None
    assert trace.outputs[step.output_key].data == {"signal": "order-42", "data": [1, 2]}


def test_the_trace_shows_a_timed_out_signal_wait_completed_with_null() -> None:
    _, history = run_through(
        schedule(), c.HandleCallResult(call=call(), result=wait_op(timeout="1h"))
    )
    trace = t.fold_trace([*history, h.WaitTimedOut(at=T0 + 99, step_id="w")])
    [step] = trace.root.children
    assert step.status is t.SpanStatus.COMPLETED
    assert isinstance(step.step_info, t.SignalInfo) and step.step_info.timed_out is True
    assert step.output_key is not None and trace.outputs[step.output_key].data is None
