"""Trace folding (the span tree a run's history gives, as GraphQL clients read it) and the pure
helpers the API builds on it: output ids, error shapes, Go-style periods, rerun memos."""

from __future__ import annotations

from typing import Any

from app.graphql.registry_types import go_duration
from app.graphql.rerun import memos_before
from app.graphql.trace_types import output_id, parse_output_id, step_error
from domain import history as h
from projections.traces import (
    FINALIZATION,
    InvokeInfo,
    RunInfo,
    SleepInfo,
    Span,
    SpanStatus,
    StepOp,
    Trace,
    WaitInfo,
    fold_trace,
)

T0 = 1_800_000_000_000
RUN = "01JRUN0000000000000000000A"
EVENT = {"name": "shop/order", "data": {"id": 7}, "id": "x", "ts": T0, "user": {}}


def scheduled(at: int = T0) -> h.RunScheduled:
    return h.RunScheduled(
        at=at,
        run_id=RUN,
        function_id="fn-uuid",
        function_slug="shop-checkout",
        function_version=1,
        app_id="app-uuid",
        events=(EVENT,),
        event_ids=("01JEVT0000000000000000000A",),
        idempotency_key="x",
        max_attempts=3,
    )


def done(step_id: str, name: str, value: Any, at: int, attempt: int = 0) -> h.StepCompleted:
    return h.StepCompleted(
        at=at,
        step_id=step_id,
        name=name,
        output={"data": value},
        attempt=attempt,
        started_at=at - 5,
    )


def errored(step_id: str, name: str, at: int, attempt: int = 0) -> h.StepErrored:
    return h.StepErrored(
        at=at,
        step_id=step_id,
        name=name,
        attempt=attempt,
        error={"name": "RuntimeError", "message": f"boom {attempt}", "stack": "tb"},
        retry_at=at + 500,
        started_at=at - 5,
    )


def fold(*events: h.HistoryEvent) -> Trace:
    return fold_trace([scheduled(), h.RunStarted(at=T0 + 10), *events], name="Checkout")


def names(span: Span) -> list[str]:
    return [c.name for c in span.children]


def data_of(trace: Trace, span: Span) -> Any:
    assert span.output_key is not None
    output = trace.outputs[span.output_key]
    assert output.has_data and output.error is None
    return output.data


def error_of(trace: Trace, span: Span) -> Any:
    assert span.output_key is not None
    output = trace.outputs[span.output_key]
    assert not output.has_data
    return output.error


def test_sequential_steps_are_children_in_execution_order_with_unwrapped_outputs() -> None:
    trace = fold(
        done("s-a", "a", 1, T0 + 20),
        done("s-b", "b", {"n": 2}, T0 + 30),
        done("s-c", "c", [3], T0 + 40),
        h.RunCompleted(at=T0 + 50, output={"sum": 6}),
    )
    root = trace.root
    assert root.is_root and root.name == "Checkout" and root.status is SpanStatus.COMPLETED
    assert (root.queued_at, root.started_at, root.ended_at, root.duration) == (
        T0,
        T0 + 10,
        T0 + 50,
        40,
    )
    assert names(root) == ["a", "b", "c", FINALIZATION]
    a, b, c, final = root.children
    assert [data_of(trace, s) for s in (a, b, c)] == [1, {"n": 2}, [3]]
    assert all(s.step_op is StepOp.RUN and s.status is SpanStatus.COMPLETED for s in (a, b, c))
    assert (a.step_id, a.step_type, a.attempts, a.children) == ("s-a", "RUN", 0, ())
    assert isinstance(a.step_info, RunInfo)
    assert (b.queued_at, b.started_at, b.ended_at, b.duration) == (T0 + 20, T0 + 25, T0 + 30, 5)
    assert a.parent_span_id == root.span_id
    assert final.status is SpanStatus.COMPLETED and final.step_type == "FINALIZATION"
    assert data_of(trace, final) == {"sum": 6} == data_of(trace, root)
    assert len({s.span_id for s in (root, a, b, c, final)}) == 5


def test_a_step_id_used_twice_gives_two_spans_with_the_same_name() -> None:
    trace = fold(done("h1", "fetch", 1, T0 + 20), done("h2", "fetch", 2, T0 + 30))
    assert names(trace.root) == ["fetch", "fetch"]
    assert [data_of(trace, s) for s in trace.root.children] == [1, 2]
    assert trace.root.status is SpanStatus.RUNNING and trace.root.ended_at is None


def test_retried_attempts_become_children_of_the_step_span() -> None:
    trace = fold(
        errored("s-f", "flaky", T0 + 20, attempt=0),
        errored("s-f", "flaky", T0 + 600, attempt=1),
        done("s-f", "flaky", "ok", T0 + 1200, attempt=2),
        h.RunCompleted(at=T0 + 1300, output="ok"),
    )
    [step, _final] = trace.root.children
    assert step.name == "flaky" and step.status is SpanStatus.COMPLETED and step.attempts == 2
    assert names(step) == ["Attempt 0", "Attempt 1", "Attempt 2"]
    first, second, third = step.children
    assert [a.status for a in step.children] == [
        SpanStatus.FAILED,
        SpanStatus.FAILED,
        SpanStatus.COMPLETED,
    ]
    assert error_of(trace, first)["message"] == "boom 0"
    assert error_of(trace, second)["message"] == "boom 1"
    assert data_of(trace, third) == "ok" == data_of(trace, step)
    assert step.started_at == first.started_at and step.ended_at == T0 + 1200


def test_a_pending_retry_shows_a_queued_attempt_and_a_running_step() -> None:
    trace = fold(errored("s-f", "flaky", T0 + 20))
    [step] = trace.root.children
    assert step.status is SpanStatus.RUNNING and step.ended_at is None
    assert [(a.name, a.status) for a in step.children] == [
        ("Attempt 0", SpanStatus.FAILED),
        ("Attempt 1", SpanStatus.QUEUED),
    ]
    assert step.output_key is None


def test_a_step_that_failed_for_good_has_its_error_and_the_run_fails_in_finalization() -> None:
    error = {"name": "NonRetriableError", "message": "nope", "stack": "Traceback…"}
    trace = fold(
        h.StepFailed(at=T0 + 20, step_id="s-b", name="boom", attempt=0, error=error,
                     started_at=T0 + 15),
        h.RunFailed(at=T0 + 30, error=error),
    )  # fmt: skip
    step, final = trace.root.children
    assert step.status is SpanStatus.FAILED and error_of(trace, step) == error
    assert names(step) == ["Attempt 0"]
    assert final.name == FINALIZATION and final.status is SpanStatus.FAILED
    assert error_of(trace, final) == error == error_of(trace, trace.root)
    assert trace.root.status is SpanStatus.FAILED


def test_function_body_errors_are_attempts_of_the_finalization_span() -> None:
    trace = fold(
        errored("step", "step", T0 + 20, attempt=0),
        h.RunFailed(at=T0 + 600, error={"name": "RuntimeError", "message": "boom 1"}),
    )
    [final] = trace.root.children
    assert final.name == FINALIZATION and final.status is SpanStatus.FAILED
    assert final.attempts == 1 and names(final) == ["Attempt 0", "Attempt 1"]
    assert error_of(trace, final.children[0])["message"] == "boom 0"
    assert error_of(trace, final)["message"] == "boom 1"


def test_parallel_steps_appear_when_planned_in_plan_order() -> None:
    planned = h.StepsPlanned(at=T0 + 20, steps=(("p1", "p1"), ("p2", "p2"), ("p3", "p3")))
    trace = fold(planned, done("p2", "p2", 20, T0 + 30), done("p1", "p1", 10, T0 + 40))
    p1, p2, p3 = trace.root.children
    assert names(trace.root) == ["p1", "p2", "p3"]
    assert (p1.status, p2.status, p3.status) == (
        SpanStatus.COMPLETED,
        SpanStatus.COMPLETED,
        SpanStatus.QUEUED,
    )
    assert p3.queued_at == T0 + 20 and p3.started_at is None and p3.output_key is None
    assert data_of(trace, p1) == 10


def test_a_sleep_waits_then_completes_with_no_output() -> None:
    until = T0 + 60_000
    asleep = fold(h.SleepStarted(at=T0 + 20, step_id="z", name="nap", until=until))
    [nap] = asleep.root.children
    assert (nap.status, nap.step_op, nap.step_type) == (SpanStatus.WAITING, StepOp.SLEEP, "SLEEP")
    assert nap.step_info == SleepInfo(sleep_until=until) and nap.ended_at is None
    woke = fold(
        h.SleepStarted(at=T0 + 20, step_id="z", name="nap", until=until),
        h.SleepCompleted(at=until, step_id="z"),
    )
    [nap] = woke.root.children
    assert nap.status is SpanStatus.COMPLETED and nap.ended_at == until
    assert nap.output_key is None


def wait_started() -> h.WaitStarted:
    return h.WaitStarted(
        at=T0 + 20,
        step_id="w",
        name="approval",
        event_name="shop/approved",
        expression="async.data.id == 7",
        expires_at=T0 + 5000,
        pause_id="p",
    )


def test_a_matched_wait_outputs_the_event_unwrapped() -> None:
    reply = {"name": "shop/approved", "data": {"id": 7}, "id": "r", "ts": T0 + 90, "user": {}}
    trace = fold(
        wait_started(), h.WaitMatched(at=T0 + 100, step_id="w", event=reply, event_id="01JR")
    )
    [wait] = trace.root.children
    assert wait.status is SpanStatus.COMPLETED and wait.step_op is StepOp.WAIT_FOR_EVENT
    assert wait.step_info == WaitInfo(
        event_name="shop/approved",
        expression="async.data.id == 7",
        timeout=T0 + 5000,
        found_event_id="01JR",
        timed_out=False,
    )
    assert data_of(trace, wait) == reply


def test_a_timed_out_wait_outputs_null() -> None:
    waiting = fold(wait_started())
    assert waiting.root.children[0].status is SpanStatus.WAITING
    trace = fold(wait_started(), h.WaitTimedOut(at=T0 + 5000, step_id="w"))
    [wait] = trace.root.children
    assert isinstance(wait.step_info, WaitInfo) and wait.step_info.timed_out is True
    assert wait.step_info.found_event_id is None
    assert data_of(trace, wait) is None


def invoke_started() -> h.InvokeStarted:
    return h.InvokeStarted(
        at=T0 + 20,
        step_id="i",
        name="call",
        function_slug="shop-invoicer",
        correlation_id=f"{RUN}.i",
        invoke_event_id="01JINV",
        expires_at=T0 + 9000,
        pause_id="p",
    )


def test_an_invoke_runs_until_the_child_returns() -> None:
    running = fold(invoke_started())
    [call] = running.root.children
    assert call.status is SpanStatus.RUNNING and call.step_op is StepOp.INVOKE
    trace = fold(
        invoke_started(),
        h.InvokeCompleted(at=T0 + 80, step_id="i", output={"data": {"n": 42}}, child_run_id="C"),
    )
    [call] = trace.root.children
    assert call.status is SpanStatus.COMPLETED and data_of(trace, call) == {"n": 42}
    assert call.step_info == InvokeInfo(
        triggering_event_id="01JINV",
        function_id="shop-invoicer",
        timeout=T0 + 9000,
        run_id="C",
        timed_out=False,
    )


def test_a_failed_invoke_is_a_failed_span_with_the_childs_error() -> None:
    error = {"name": "Error", "message": "invokee failed"}
    trace = fold(
        invoke_started(), h.InvokeCompleted(at=T0 + 80, step_id="i", output={"error": error})
    )
    [call] = trace.root.children
    assert call.status is SpanStatus.FAILED and error_of(trace, call) == error


def test_cancelling_a_run_cancels_its_open_steps_and_adds_no_finalization() -> None:
    trace = fold(
        done("s-a", "a", "a", T0 + 20),
        h.SleepStarted(at=T0 + 30, step_id="z", name="long-nap", until=T0 + 60_000),
        h.RunCancelled(at=T0 + 40, reason="cancelled via API"),
    )
    assert trace.root.status is SpanStatus.CANCELLED and trace.root.ended_at == T0 + 40
    assert names(trace.root) == ["a", "long-nap"]
    a, nap = trace.root.children
    assert a.status is SpanStatus.COMPLETED
    assert nap.status is SpanStatus.CANCELLED and nap.ended_at == T0 + 40
    assert trace.root.output_key is None


def test_a_queued_run_has_a_queued_root_and_no_children() -> None:
    trace = fold_trace([scheduled()])
    assert trace.root.status is SpanStatus.QUEUED and trace.root.children == ()
    assert trace.root.name == "shop-checkout" and trace.run_id == RUN


def test_a_body_error_whose_retry_reached_a_step_leaves_no_queued_attempt() -> None:
    trace = fold(errored("step", "step", T0 + 20), done("s-a", "a", 1, T0 + 600))
    a, final = trace.root.children
    assert a.name == "a" and final.name == FINALIZATION and final.status is SpanStatus.RUNNING
    assert [(c.name, c.status) for c in final.children] == [("Attempt 0", SpanStatus.FAILED)]
    pending = fold(errored("step", "step", T0 + 20))
    [final] = pending.root.children
    assert [c.status for c in final.children] == [SpanStatus.FAILED, SpanStatus.QUEUED]


def test_output_ids_round_trip_and_reject_garbage() -> None:
    assert parse_output_id(output_id(RUN, "step:abc")) == (RUN, "step:abc")
    assert parse_output_id("not base64!") is None
    assert parse_output_id(output_id(RUN, "")) is None


def test_errors_without_a_message_are_shown_whole_in_the_stack() -> None:
    full = step_error({"name": "Error", "message": "m", "stack": "s", "cause": {"x": 1}})
    assert (full.message, full.name, full.stack, full.cause) == ("m", "Error", "s", {"x": 1})
    odd = step_error({"error": "InngestInvokeTimeoutError"})
    assert odd.message == "" and odd.stack == '{"error":"InngestInvokeTimeoutError"}'
    assert step_error("plain").message == "plain"


def test_periods_are_written_like_go_durations() -> None:
    assert [go_duration(ms) for ms in (0, 500, 1500, 60_000, 90_000, 7_200_000)] == [
        "0s", "500ms", "1.5s", "1m0s", "1m30s", "2h0m0s"
    ]  # fmt: skip


def test_rerun_memos_are_those_completed_before_the_step_in_stack_order() -> None:
    planned = h.StepsPlanned(at=T0 + 20, steps=(("p1", "p1"), ("p2", "p2")))
    history = [
        scheduled(), h.RunStarted(at=T0 + 10), done("s-a", "a", 1, T0 + 15), planned,
        done("p2", "p2", 20, T0 + 30), done("p1", "p1", 10, T0 + 40),
        errored("s-z", "z", T0 + 50),
    ]  # fmt: skip
    assert memos_before(history, "s-a") == {}
    assert list(memos_before(history, "p1")) == ["s-a", "p2"]
    assert memos_before(history, "p2") == {"s-a": {"data": 1}}
    # A step that never completed keeps what was done before the run first learnt of it.
    assert list(memos_before(history, "s-z")) == ["s-a", "p2", "p1"]
