"""``defer()``: DeferAdd and DeferAbort ops, the ``defers`` the SDK is told of, and the
``inngest/deferred.schedule`` events a run emits when it ends (upstream's rules and limits)."""

from __future__ import annotations

from typing import Any

from app.drivers.http import request_body
from domain import commands as c
from domain import history as h
from domain.decide import COMPLETE_STEP_ID, MAX_DEFERS_PER_RUN, decide
from domain.effects import EmitEvent, Enqueue, RetryCall
from domain.ids import deterministic_ulid, ulid_ms
from domain.run import RunState, RunStatus, fold
from tests.unit.test_decide_steps import ops
from tests.unit.test_run_state import RUN, call, ctx, run_through, schedule


def defer(defer_id: str, data: Any = None, slug: str = "app-follow-up") -> dict[str, Any]:
    return {"id": defer_id, "op": "DeferAdd", "opts": {"fn_slug": slug, "input": data or {}}}


def step(step_id: str = "s1") -> dict[str, Any]:
    return {"id": step_id, "op": "StepRun", "data": 1}


def apply(state: RunState, *raw: dict[str, Any]) -> tuple[RunState, Any]:
    decision = decide(state, c.HandleCallResult(call=call(), result=ops(*raw)), ctx())
    return fold(decision.events, state), decision


def started() -> RunState:
    state, _ = run_through(schedule())
    return state


def test_a_defer_is_recorded_once_and_the_sdk_is_told_of_it() -> None:
    state, decision = apply(started(), defer("d1", {"to": "a"}), step())
    assert [type(e) for e in decision.events][-2:] == [h.DeferAdded, h.StepCompleted]
    again, decision = apply(state, defer("d1", {"to": "changed"}), step("s2"))
    assert not any(isinstance(e, h.DeferAdded) for e in decision.events)  # first wins
    assert again.defers["d1"]["input"] == {"to": "a"}
    body = request_body(again, step_id="step", attempt=0, job_id="j", item_id=1, use_api=False)
    assert body["defers"] == {"d1": {"abortable": True}}


def test_bad_defers_are_rejected_and_kept_without_failing_the_run() -> None:
    state, _ = apply(
        started(),
        defer("no-slug", {"a": 1}, slug=""),
        {"id": "not-object", "op": "DeferAdd", "opts": {"fn_slug": "x", "input": 5}},
        {"id": "bad-meta", "op": "DeferAdd", "opts": {"fn_slug": "x", "input": {}, "meta": 3}},
        defer("huge", {"blob": "x" * (4 * 1024 * 1024)}),
        step(),
    )
    assert state.status is RunStatus.RUNNING
    assert {k: v["status"] for k, v in state.defers.items()} == dict.fromkeys(
        ("no-slug", "not-object", "bad-meta", "huge"), "Rejected"
    )
    body = request_body(state, step_id="step", attempt=0, job_id="j", item_id=1, use_api=False)
    assert set(body["defers"]) == set(state.defers)
    assert not any(entry["abortable"] for entry in body["defers"].values())


def test_defers_over_the_aggregate_size_are_rejected() -> None:
    half = {"blob": "x" * (3 * 1024 * 1024)}
    state, _ = apply(started(), defer("a", half), defer("b", half), step())
    assert (state.defers["a"]["status"], state.defers["b"]["status"]) == ("AfterRun", "Rejected")


def test_defers_beyond_the_per_run_count_are_not_recorded() -> None:
    many = [defer(f"d{i}") for i in range(MAX_DEFERS_PER_RUN + 3)]
    state, _ = apply(started(), *many, step())
    assert len(state.defers) == MAX_DEFERS_PER_RUN


def test_an_aborted_defer_is_never_scheduled() -> None:
    state, _ = apply(started(), defer("kept"), defer("gone"), step())
    abort = {"id": "gone:abort", "op": "DeferAbort", "opts": {"target_hashed_id": "gone"}}
    state, decision = apply(state, abort, {"id": "done", "op": "RunComplete", "data": 7})
    assert state.defers["gone"]["status"] == "Aborted"
    emitted = [e.event for e in decision.effects if isinstance(e, EmitEvent)]
    deferred = [e for e in emitted if e["name"] == "inngest/deferred.schedule"]
    assert [e["data"]["_inngest"]["fn_slug"] for e in deferred] == ["app-follow-up"]
    [event] = deferred
    assert event["id"] == deterministic_ulid(ulid_ms(RUN), f"defer-event:{RUN}:kept")
    assert event["data"]["_inngest"] == {
        "fn_slug": "app-follow-up",
        "parent_app_id": "app-uuid",
        "parent_fn_id": "fn-uuid",
        "parent_fn_slug": "app-fn",
        "parent_run_id": RUN,
    }


def test_a_failed_or_cancelled_run_still_schedules_its_defers() -> None:
    state, _ = apply(started(), defer("kept", {"x": 1}), step())
    cancelled = decide(state, c.CancelRun(reason="test"), ctx())
    names = [e.event["name"] for e in cancelled.effects if isinstance(e, EmitEvent)]
    assert "inngest/deferred.schedule" in names


def test_only_lazy_ops_still_call_the_sdk_again() -> None:
    _, decision = apply(started(), defer("alone"))
    assert any(isinstance(e, Enqueue) for e in decision.effects)


def test_the_functions_own_throw_shipped_as_an_op_fails_or_retries_the_run() -> None:
    error = {"name": "Error", "message": "boom", "stack": None}
    failed, _ = apply(
        started(), defer("d"), {"id": COMPLETE_STEP_ID, "op": "StepFailed", "error": error}
    )
    assert failed.status is RunStatus.FAILED and failed.error == error
    _, decision = apply(
        started(), defer("d"), {"id": COMPLETE_STEP_ID, "op": "StepError", "error": error}
    )
    assert any(isinstance(e, RetryCall) for e in decision.effects)
    assert not any(isinstance(e, h.StepFailed) for e in decision.events)
