"""Run and step metadata: updates riding on ops and from the API, upstream's validation and
limits, how updates of one kind combine, and where the trace shows them."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from app.replay import summary
from domain import codec
from domain import commands as c
from domain import history as h
from domain import metadata as md
from domain.decide import decide
from domain.run import RunState, RunStatus, fold
from projections.traces import Span, fold_trace
from tests.unit.test_decide_steps import ops
from tests.unit.test_run_state import call, ctx, run_through, schedule


def update(values: Any, kind: str = "userland.default", op: str = "set", **extra: Any) -> Any:
    return {"kind": kind, "op": op, "values": values, "scope": "step", **extra}


def step(step_id: str = "s1", *updates: Any, op: str = "StepRun") -> dict[str, Any]:
    raw: dict[str, Any] = {"id": step_id, "op": op, "data": 1, "metadata": list(updates)}
    if op in ("StepError", "StepFailed"):
        raw["error"] = {"name": "Error", "message": "boom"}
    return raw


def started() -> tuple[RunState, list[h.HistoryEvent]]:
    return run_through(schedule())


def report(
    state: RunState, history: list[h.HistoryEvent], *raw: Any, attempt: int = 0
) -> tuple[RunState, list[h.HistoryEvent]]:
    result = c.HandleCallResult(call=call(attempt), result=ops(*raw))
    events = decide(state, result, ctx()).events
    return fold(events, state), history + events


def spans(span: Span) -> dict[str, Span]:
    found = {span.name: span}
    for child in span.children:
        found.update(spans(child))
    return found


def test_metadata_on_a_step_is_recorded_with_the_step_and_shown_on_its_span() -> None:
    state, history = started()
    state, history = report(state, history, step("s1", update({"a": 1})))
    types = [type(e) for e in history[-2:]]
    assert types == [h.StepCompleted, h.MetadataAdded]
    added = history[-1]
    assert isinstance(added, h.MetadataAdded)
    assert (added.step_id, added.scope, added.source, added.attempt) == ("s1", "step", "op", None)
    assert state.metadata_bytes == md.values_size({"a": 1}) and state.metadata_count == 1
    assert codec.decode(*codec.encode(added)) == added
    shown = spans(fold_trace(history).root)["s1"].metadata
    assert [(m.kind, m.scope, m.values) for m in shown] == [("userland.default", "step", {"a": 1})]


def test_a_duplicate_step_report_records_its_metadata_only_once() -> None:
    state, history = report(*started(), step("s1", update({"a": 1})))
    state, history = report(state, history, step("s1", update({"a": 2})))
    assert sum(isinstance(e, h.MetadataAdded) for e in history) == 1


def test_bad_op_metadata_is_rejected_and_kept_without_failing_the_run() -> None:
    bad = [
        update({"a": 1}, kind="inngest.secret"),  # not in the allowlist
        update({"a": 1}, kind="k" * 200),
        update([1, 2]),
        update({"a": 1}, op="explode"),
        update({"a": 1}, scope="extended_trace"),  # no span for an op to name
        update({"blob": "x" * md.MAX_SPAN_BYTES}),
        update({"s": {"value": "high"}}, kind="inngest.score"),
        "not an object",
    ]
    state, history = report(*started(), step("s1", *bad, update({"ok": True})))
    assert state.status is RunStatus.RUNNING and "s1" in state.steps
    rejected = [e for e in history if isinstance(e, h.MetadataRejected)]
    assert len(rejected) == len(bad)
    assert all(e.reason for e in rejected)
    added = [e for e in history if isinstance(e, h.MetadataAdded)]
    assert [e.values for e in added] == [{"ok": True}]


def test_op_metadata_over_the_run_budget_is_rejected() -> None:
    big = {"blob": "x" * (md.MAX_SPAN_BYTES - 100)}
    updates = [update(big, kind=f"userland.k{i}") for i in range(20)]
    state, history = report(*started(), step("s1", *updates))
    assert state.metadata_bytes <= md.MAX_RUN_BYTES
    reasons = [e.reason for e in history if isinstance(e, h.MetadataRejected)]
    assert reasons and all("Cumulative" in r for r in reasons)


def test_op_metadata_past_the_count_limit_is_not_recorded() -> None:
    updates = [update({}, kind=f"userland.k{i}") for i in range(md.MAX_UPDATES_PER_RUN + 5)]
    state, _ = report(*started(), step("s1", *updates))
    assert state.metadata_count == md.MAX_UPDATES_PER_RUN


def test_metadata_of_a_retried_attempt_goes_on_that_attempt() -> None:
    state, history = report(*started(), step("s1", update({"try": 0}), op="StepError"))
    state, history = report(state, history, step("s1", update({"try": 1})), attempt=1)
    attempt_added = [e for e in history if isinstance(e, h.MetadataAdded)]
    assert [e.attempt for e in attempt_added] == [0, None]
    shown = spans(fold_trace(history).root)
    assert [m.values for m in shown["Attempt 0"].metadata] == [{"try": 0}]
    assert [m.values for m in shown["s1"].metadata] == [{"try": 1}]


def test_run_scoped_op_metadata_goes_on_the_run() -> None:
    _, history = report(*started(), step("s1", update({"r": 1}, scope="run")))
    trace = fold_trace(history).root
    assert [m.scope for m in trace.metadata] == ["run"]
    assert spans(trace)["s1"].metadata == ()


@pytest.mark.parametrize(
    ("op", "values", "expected"),
    [
        ("merge", {"b": 3, "c": 4}, {"a": 1, "b": 3, "c": 4}),
        ("set", {"c": 4}, {"c": 4}),
        ("delete", {"a": None}, {"b": 2}),
        ("add", {"a": 10, "b": "x", "d": 5}, {"a": 11, "b": 2, "d": 5}),
    ],
)
def test_updates_of_one_kind_combine_as_upstreams_do(
    op: str, values: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert md.combine({"a": 1, "b": 2}, values, op) == expected


def test_add_replaces_a_value_that_is_not_a_number() -> None:
    assert md.combine({"a": "text", "b": True}, {"a": 2, "b": 3}, "add") == {"a": 2, "b": 3}


def test_the_trace_combines_a_kinds_updates_in_order_and_keeps_kinds_apart() -> None:
    state, history = started()
    state, history = report(
        state,
        history,
        step(
            "s1",
            update({"a": 1, "b": 1}, op="merge"),
            update({"a": 5}, op="add"),
            update({"x": 1}, kind="userland.other"),
        ),
    )
    shown = spans(fold_trace(history).root)["s1"].metadata
    assert [(m.kind, m.values) for m in shown] == [
        ("userland.default", {"a": 6, "b": 1}),
        ("userland.other", {"x": 1}),
    ]


def api(state: RunState, target: md.Target, *updates: md.Update) -> list[h.HistoryEvent]:
    return decide(state, c.AddMetadata(target=target, updates=updates), ctx()).events


def test_api_metadata_is_recorded_all_together_at_its_target() -> None:
    state, history = report(*started(), step("s1"))
    target = md.parse_target({"step_id": "my step"})
    assert target.step_id == hashlib.sha1(b"my step").hexdigest() and target.scope == "step"
    events = api(state, md.Target(step_id="s1", scope="step"), md.parse_update(update({"k": 1})))
    assert [(type(e), e.source) for e in events] == [(h.MetadataAdded, "api")]  # type: ignore[attr-defined]
    shown = spans(fold_trace(history + events).root)["s1"].metadata
    assert [m.values for m in shown] == [{"k": 1}]


def test_api_metadata_over_the_run_budget_or_on_an_ended_run_records_nothing() -> None:
    state, _ = started()
    big = md.parse_update(update({"blob": "x" * (md.MAX_SPAN_BYTES - 100)}))
    many = (big,) * 17
    assert api(state, md.Target(), *many) == []
    assert "Cumulative" in (md.api_refusal(state, many) or "")
    assert len(api(state, md.Target(), big)) == 1
    ended = fold([h.RunCompleted(at=1, output=None)], state)
    assert api(ended, md.Target(), big) == [] and md.api_refusal(ended, (big,)) == "ended"
    assert md.api_refusal(RunState(), (big,)) == "not_found"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"step_index": 1}, "target.step_id must be defined if target.step_index is defined"),
        ({"step_attempt": 0}, "target.step_id must be defined if target.step_attempt is defined"),
        ({"span_id": "ab"}, "target.step_id must be defined if target.span_id is defined"),
        ({"step_id": 5}, "target.step_id must be a str"),
        ("run", "target must be an object"),
    ],
)
def test_api_targets_are_checked_as_upstreams_are(raw: Any, message: str) -> None:
    with pytest.raises(md.InvalidMetadata, match=message):
        md.parse_target(raw)


def test_an_api_target_picks_step_attempt_or_span_as_upstreams_does() -> None:
    assert md.parse_target({"run_id": "x"}) == md.Target()
    repeat = md.parse_target({"step_id": "s", "step_index": 2, "step_attempt": -1})
    assert repeat.step_id == hashlib.sha1(b"s:2").hexdigest() and repeat.attempt is None
    span = md.parse_target({"step_id": "s", "step_attempt": 1, "span_id": "f00d"})
    assert (span.scope, span.attempt, span.span_id) == ("extended_trace", 1, "f00d")
    no_attempt = md.parse_target({"step_id": "s", "span_id": "f00d"})
    assert (no_attempt.scope, no_attempt.span_id) == ("step", None)


@pytest.mark.parametrize(
    "values",
    [
        {"s": {"value": float("inf")}},
        {"s": {"value": 1, "extra": 2}},
        {"s": 1},
        {"bad'name": {"value": 1}},
        {"n" * 129: {"value": 1}},
    ],
)
def test_score_values_must_be_a_finite_number_or_boolean(values: dict[str, Any]) -> None:
    with pytest.raises(md.InvalidMetadata):
        md.validate_allowed(md.Update(kind="inngest.score", op="set", values=values))


def test_allowed_kinds_pass_validation() -> None:
    for kind in ("userland.x", "inngest.warnings", "anything"):
        md.validate_allowed(md.Update(kind=kind, op="merge", values={"a": 1}))
    md.validate_allowed(md.Update(kind="inngest.score", op="set", values={"s": {"value": True}}))


def test_replay_names_what_metadata_was_added_or_rejected() -> None:
    _, history = report(*started(), step("s1", update({"a": 1}), update({}, kind="inngest.x")))
    lines = [summary(e) for e in history if isinstance(e, h.MetadataAdded | h.MetadataRejected)]
    assert lines[0].startswith("step metadata userland.default set")
    assert lines[1].startswith("metadata inngest.x rejected: ") and "allowlist" in lines[1]
