"""``decide`` for the step opcodes: parallel fan-out and join, sleeps, waits, invokes."""

from __future__ import annotations

import dataclasses

from domain import commands as c
from domain import history as h
from domain.decide import decide
from domain.effects import ClearPause, CreatePause, EmitEvent, Enqueue
from domain.opcodes import OpsReported, parse_ops
from domain.queue import ItemKind
from domain.run import RunStatus, fold
from tests.unit.test_run_state import T0, call, ctx, run_through, schedule


def ops(*raw: dict[str, object]) -> OpsReported:
    return OpsReported(ops=parse_ops(list(raw)), request_version=2)


def enqueued(decision) -> list[tuple[ItemKind, str]]:  # type: ignore[no-untyped-def]
    return [
        (e.item.kind, e.item.payload["step_id"]) for e in decision.effects if isinstance(e, Enqueue)
    ]


def test_a_fan_out_plans_each_step_and_discovers_once_when_all_have_joined() -> None:
    state, _ = run_through(schedule())
    planned = ops(*({"id": s, "op": "StepPlanned", "name": s} for s in ("p1", "p2")))
    first = decide(state, c.HandleCallResult(call=call(), result=planned), ctx())
    assert enqueued(first) == [(ItemKind.EDGE, "p1"), (ItemKind.EDGE, "p2")]
    state = fold(first.events, state)
    assert state.force_step_plan and state.pending == {"p1", "p2"}
    one = decide(
        state,
        c.HandleCallResult(
            call=call(step="p1"), result=ops({"id": "p1", "op": "StepRun", "data": 1})
        ),
        ctx(),
    )
    assert enqueued(one) == []  # p2 still outstanding: no discovery yet
    state = fold(one.events, state)
    two = decide(
        state,
        c.HandleCallResult(
            call=call(step="p2"), result=ops({"id": "p2", "op": "StepRun", "data": 2})
        ),
        ctx(),
    )
    assert enqueued(two) == [(ItemKind.EDGE, "step")]
    state = fold(two.events, state)
    assert state.stack == ["p1", "p2"] and not state.force_step_plan


def test_in_race_mode_every_completion_calls_the_sdk_again() -> None:
    state, _ = run_through(schedule())
    planned = ops(
        *({"id": s, "op": "StepPlanned", "opts": {"parallelMode": "race"}} for s in ("p1", "p2"))
    )
    state = fold(
        decide(state, c.HandleCallResult(call=call(), result=planned), ctx()).events, state
    )
    one = decide(
        state,
        c.HandleCallResult(
            call=call(step="p1"), result=ops({"id": "p1", "op": "StepRun", "data": 1})
        ),
        ctx(),
    )
    assert enqueued(one) == [(ItemKind.EDGE, "step")]


def test_a_sleep_parks_the_step_until_its_time_then_memoizes_null() -> None:
    state, _ = run_through(schedule())
    decision = decide(
        state,
        c.HandleCallResult(
            call=call(),
            result=ops({"id": "z", "op": "Sleep", "name": "nap", "opts": {"duration": "30s"}}),
        ),
        ctx(),
    )
    [sleep] = [e for e in decision.effects if isinstance(e, Enqueue)]
    assert sleep.item.kind is ItemKind.SLEEP and sleep.item.available_at == T0 + 30_000
    state = fold(decision.events, state)
    woke = decide(state, c.WakeSleep(step_id="z"), ctx(T0 + 30_000))
    state = fold(woke.events, state)
    assert state.steps["z"] is None and enqueued(woke) == [(ItemKind.EDGE, "step")]
    assert decide(state, c.WakeSleep(step_id="z"), ctx()).is_empty


def test_a_python_sleep_until_names_the_date_in_the_op_name() -> None:
    state, _ = run_through(schedule())
    decision = decide(
        state,
        c.HandleCallResult(
            call=call(),
            result=ops(
                {"id": "z", "op": "Sleep", "name": "2027-01-15T08:00:10.000Z", "opts": None}
            ),
        ),
        ctx(),
    )
    [event] = [e for e in decision.events if isinstance(e, h.SleepStarted)]
    assert event.until == 1_800_000_010_000


def test_a_wait_inlines_the_trigger_and_first_resolution_wins() -> None:
    state, _ = run_through(schedule())
    wait = ops(
        {
            "id": "w",
            "op": "WaitForEvent",
            "name": "app/reply",
            "opts": {"if": "async.data.n == event.data.n", "timeout": "1m"},
        }
    )
    interpolating = ctx()
    decision = decide(state, c.HandleCallResult(call=call(), result=wait), interpolating)
    [pause] = [e for e in decision.effects if isinstance(e, CreatePause)]
    assert pause.event_name == "app/reply" and pause.expires_at == T0 + 60_000
    state = fold(decision.events, state)
    assert state.waiting == {"w": "wait"}
    reply = {"name": "app/reply", "data": {"n": 1}, "id": "r", "ts": T0 + 5}
    matched = decide(state, c.ResumeWait(step_id="w", event=reply, event_id="x"), ctx())
    assert any(isinstance(e, ClearPause) for e in matched.effects)
    state = fold(matched.events, state)
    assert state.steps["w"] == reply
    assert decide(state, c.TimeOutWait(step_id="w"), ctx()).is_empty


def test_a_wait_whose_condition_cannot_be_evaluated_fails_the_run_with_the_reason() -> None:
    """The interpolator refuses (the trigger's values made the condition too long): the run
    fails clearly instead of parking on a wait that could never match."""
    state, _ = run_through(schedule())
    wait = ops(
        {
            "id": "w",
            "op": "WaitForEvent",
            "name": "app/reply",
            "opts": {"if": "async.data.n == event.data.blob", "timeout": "1m"},
        }
    )

    def refuse(source: str, _event: object) -> str:
        raise ValueError("with the event's values filled in, expression is too long")

    refusing = dataclasses.replace(ctx(), interpolate=refuse)
    decision = decide(state, c.HandleCallResult(call=call(), result=wait), refusing)
    assert not any(isinstance(e, CreatePause) for e in decision.effects)
    [failed] = [e for e in decision.events if isinstance(e, h.RunFailed)]
    assert "WaitForEvent op 'app/reply'" in failed.error["message"]
    assert failed.error["message"].endswith("expression is too long")


def test_an_invoke_emits_the_invocation_and_resumes_with_the_childs_result() -> None:
    state, _ = run_through(schedule())
    invoke = ops(
        {
            "id": "i",
            "op": "InvokeFunction",
            "name": "call",
            "opts": {"function_id": "app-child", "payload": {"data": {"n": 2}}},
        }
    )
    decision = decide(state, c.HandleCallResult(call=call(), result=invoke), ctx())
    [emitted] = [e.event for e in decision.effects if isinstance(e, EmitEvent)]
    assert emitted["name"] == "inngest/function.invoked"
    assert emitted["data"]["n"] == 2
    assert emitted["data"]["_inngest"]["fn_id"] == "app-child"
    assert emitted["data"]["_inngest"]["correlation_id"] == f"{state.run_id}.i"
    state = fold(decision.events, state)
    done = decide(state, c.CompleteInvoke(step_id="i", output={"data": 4}), ctx())
    state = fold(done.events, state)
    assert state.steps["i"] == {"data": 4}


def test_a_final_step_error_is_memoized_and_the_run_goes_on() -> None:
    state, _ = run_through(schedule())
    error = {"name": "Error", "message": "no"}
    last = decide(
        state,
        c.HandleCallResult(
            call=call(attempt=2), result=ops({"id": "s", "op": "StepError", "error": error})
        ),
        ctx(),
    )
    state = fold(last.events, state)
    assert state.steps["s"] == {"error": error} and state.status is RunStatus.RUNNING
    assert enqueued(last) == [(ItemKind.EDGE, "step")]


def test_a_step_that_would_push_state_past_32_mib_fails_the_run_early() -> None:
    state, _ = run_through(schedule())
    chunk = "x" * (9 * 1024 * 1024)
    for i in range(3):
        decision = decide(
            state,
            c.HandleCallResult(
                call=call(), result=ops({"id": f"s{i}", "op": "StepRun", "data": chunk})
            ),
            ctx(),
        )
        state = fold(decision.events, state)
    assert state.status is RunStatus.RUNNING and state.state_size > 27 * 1024 * 1024
    last = decide(
        state,
        c.HandleCallResult(call=call(), result=ops({"id": "s3", "op": "StepRun", "data": chunk})),
        ctx(),
    )
    state = fold(last.events, state)
    assert state.status is RunStatus.FAILED
    assert state.error["name"] == "InngestErrStateOverflowed"
