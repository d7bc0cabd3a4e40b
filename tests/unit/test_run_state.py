"""The run state machine: folding history, and the first ``decide`` cases."""

from __future__ import annotations

import itertools

from domain import commands as c
from domain import history as h
from domain.codec import decode, encode
from domain.decide import DecideContext, decide
from domain.effects import EmitEvent, Enqueue, FinishRun, RetryCall
from domain.opcodes import CallFailed, FunctionReturned, OpsReported, parse_ops
from domain.queue import ItemKind
from domain.run import RunState, RunStatus, evolve, fold

T0 = 1_800_000_000_000
RUN = "01KBKA0ZM00000000000000000"
_ids = itertools.count()


def ctx(now: int = T0) -> DecideContext:
    return DecideContext(
        now_ms=now,
        new_id=lambda: f"01KBKA0ZM0000000000000{next(_ids):04d}",
        rand=lambda: 0.5,
        retry_interval_ms=1000,
    )


def schedule() -> c.ScheduleRun:
    return c.ScheduleRun(
        run_id=RUN,
        function_id="fn-uuid",
        function_slug="app-fn",
        function_version=1,
        app_id="app-uuid",
        events=({"name": "app/go", "data": {"n": 1}, "id": "e1", "ts": T0, "user": {}},),
        event_ids=("01KBKA0ZM0000000000000EVNT",),
        idempotency_key="e1",
        max_attempts=3,
    )


def call(attempt: int = 0, step: str = "step") -> c.Call:
    return c.Call(step_id=step, attempt=attempt, max_attempts=3, started_at=T0 + 10)


def run_through(*commands: c.Command) -> tuple[RunState, list[h.HistoryEvent]]:
    state, history = RunState(), []
    for command in commands:
        decision = decide(state, command, ctx())
        for event in decision.events:
            state = evolve(state, event)
            history.append(event)
    return state, history


def test_scheduling_records_the_run_and_enqueues_its_start_item() -> None:
    decision = decide(RunState(), schedule(), ctx())
    assert [type(e) for e in decision.events] == [h.RunScheduled]
    [effect] = decision.effects
    assert isinstance(effect, Enqueue) and effect.item.kind is ItemKind.START
    assert effect.item.job_id == "fn-uuid:e1"
    state = fold(decision.events)
    assert state.status is RunStatus.QUEUED and decide(state, schedule(), ctx()).is_empty


def test_a_step_result_is_memoized_and_the_sdk_is_called_again() -> None:
    ops = parse_ops([{"id": "a1", "op": "StepRun", "name": "a", "data": 7}])
    state, _ = run_through(schedule())
    decision = decide(state, c.HandleCallResult(call=call(), result=OpsReported(ops=ops)), ctx())
    assert [type(e) for e in decision.events] == [h.RunStarted, h.StepCompleted]
    [effect] = decision.effects
    assert isinstance(effect, Enqueue) and effect.item.payload["step_id"] == "step"
    after = fold(decision.events, state)
    assert after.steps == {"a1": {"data": 7}} and after.stack == ["a1"]
    assert after.status is RunStatus.RUNNING


def test_a_returned_function_completes_the_run_and_emits_finished() -> None:
    state, _ = run_through(schedule())
    decision = decide(
        state, c.HandleCallResult(call=call(), result=FunctionReturned(output={"ok": True})), ctx()
    )
    after = fold(decision.events, state)
    assert after.status is RunStatus.COMPLETED and after.output == {"ok": True}
    emitted = [e.event for e in decision.effects if isinstance(e, EmitEvent)]
    assert [e["name"] for e in emitted] == ["inngest/function.finished"]
    assert emitted[0]["data"]["result"] == {"ok": True}
    assert any(isinstance(e, FinishRun) for e in decision.effects)


def test_a_failed_call_is_retried_until_attempts_run_out_then_fails_the_run() -> None:
    state, _ = run_through(schedule())
    failure = CallFailed(error={"name": "Error", "message": "boom"})
    first = decide(state, c.HandleCallResult(call=call(0), result=failure), ctx())
    assert [type(e) for e in first.events] == [h.RunStarted, h.StepErrored]
    assert first.effects == [RetryCall(available_at=T0 + 1000, attempt=1)]
    state = fold(first.events, state)
    last = decide(state, c.HandleCallResult(call=call(2), result=failure), ctx())
    after = fold(last.events, state)
    assert after.status is RunStatus.FAILED and after.error["message"] == "boom"
    names = [e.event["name"] for e in last.effects if isinstance(e, EmitEvent)]
    assert names == ["inngest/function.finished", "inngest/function.failed"]


def test_nothing_happens_to_a_finished_run() -> None:
    state, _ = run_through(schedule(), c.CancelRun())
    assert state.status is RunStatus.CANCELLED
    late = c.HandleCallResult(call=call(), result=FunctionReturned(output=1))
    assert decide(state, late, ctx()).is_empty
    assert decide(state, c.CancelRun(), ctx()).is_empty


def test_the_same_history_folded_twice_gives_the_same_state() -> None:
    ops = parse_ops([{"id": "a1", "op": "StepRun", "name": "a", "data": [1, 2]}])
    _, history = run_through(
        schedule(),
        c.HandleCallResult(call=call(), result=OpsReported(ops=ops)),
        c.HandleCallResult(call=call(), result=FunctionReturned(output="done")),
    )
    replayed = [decode(*encode(e)) for e in history]
    assert replayed == history
    assert fold(history) == fold(replayed) == fold(history)
    assert fold(history).version == len(history)


def test_a_cancelled_run_emits_finished_and_cancelled_with_the_run_id() -> None:
    state, _ = run_through(schedule())
    decision = decide(state, c.CancelRun(reason="user"), ctx())
    emitted = [e.event for e in decision.effects if isinstance(e, EmitEvent)]
    assert [e["name"] for e in emitted] == [
        "inngest/function.finished",
        "inngest/function.cancelled",
    ]
    assert emitted[1]["id"] == RUN
    assert emitted[0]["data"]["_inngest"]["status"] == "Cancelled"


def test_runs_triggered_by_lifecycle_events_emit_none_themselves() -> None:
    failed = {
        "name": "inngest/function.failed",
        "data": {"function_id": "app-fn"},
        "id": "x",
        "ts": T0,
        "user": {},
    }
    state, _ = run_through(
        c.ScheduleRun(
            run_id=RUN,
            function_id="fn2",
            function_slug="app-fn-failure",
            function_version=1,
            app_id="app",
            events=(failed,),
            event_ids=("01KBKA0ZM0000000000000EVNT",),
            idempotency_key="x",
            max_attempts=1,
        )
    )
    done = decide(state, c.HandleCallResult(call=call(), result=FunctionReturned(output=1)), ctx())
    assert [e for e in done.effects if isinstance(e, EmitEvent)] == []
