"""Property tests of the run state machine: arbitrary command sequences through ``decide``.

Hypothesis drives a scheduled run with random commands — SDK replies carrying ops of every
opcode (with well-formed and malformed options), failed calls, timers, pause resolutions,
cancellations, timeouts — and after each one checks what must hold whatever happens: ``decide``
never raises; nothing follows a final status; a step's memo is written once and never changes;
the stack has no duplicates; versions are gap-free; the fold of the history equals the
incrementally evolved state; every event survives the codec (through JSON, as stored).
"""

from __future__ import annotations

import collections
import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import commands as c
from domain import history as h
from domain.codec import decode, encode
from domain.decide import DecideContext, decide
from domain.opcodes import (
    CallFailed,
    FunctionReturned,
    GatewayOutcome,
    Opcode,
    OpsReported,
    parse_ops,
)
from domain.run import RunState, evolve, fold

T0 = 1_800_000_000_000
RUN = "01KBKA0ZM00000000000000000"
STEP_IDS = ("a", "b", "c", "step", "")
MEMO_TYPES = (
    h.StepCompleted,
    h.StepFailed,
    h.SleepCompleted,
    h.WaitMatched,
    h.WaitTimedOut,
    h.InvokeCompleted,
)

step_ids = st.sampled_from(STEP_IDS)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
#: Valid durations and dates, past and far-future ones, and junk the SDK should never send.
TIME_SPECS = ("1s", "30m", "2h45m", "1d", "400d", "", "bogus", "5", "-1s")
DATES = ("2030-01-01T00:00:00Z", "1999-01-01T00:00:00Z", "9999-12-31T23:59:59Z")
time_specs = st.sampled_from(TIME_SPECS + DATES) | json_values
errors = st.one_of(
    st.fixed_dictionaries({"name": st.text(max_size=5), "message": st.text(max_size=8)}),
    json_values,
)


def _opts_for(opcode: Opcode) -> st.SearchStrategy[dict[str, Any]]:
    if opcode is Opcode.SLEEP:
        return st.fixed_dictionaries({}, optional={"duration": time_specs})
    if opcode is Opcode.WAIT_FOR_EVENT:
        return st.fixed_dictionaries(
            {},
            optional={
                "event": st.text(max_size=6),
                "timeout": time_specs,
                "if": st.none() | st.just("async.data.id == event.data.n") | json_values,
            },
        )
    if opcode is Opcode.WAIT_FOR_SIGNAL:
        return st.fixed_dictionaries(
            {"signal": st.sampled_from(["s1", "s2", ""]) | json_values},
            optional={"timeout": time_specs, "conflict": st.sampled_from(["fail", "replace"])},
        )
    if opcode is Opcode.INVOKE_FUNCTION:
        payload = st.fixed_dictionaries(
            {}, optional={"data": json_values, "id": st.text(max_size=4), "v": json_values}
        )
        return st.fixed_dictionaries(
            {"function_id": st.text(max_size=6)},
            optional={"payload": payload | json_values, "timeout": time_specs},
        )
    if opcode is Opcode.STEP_PLANNED:
        return st.fixed_dictionaries(
            {}, optional={"parallelMode": st.sampled_from(["wait", "race", "bogus"])}
        )
    return st.dictionaries(st.text(max_size=4), json_values, max_size=2)


@st.composite
def raw_ops(draw: st.DrawFn) -> dict[str, Any]:
    opcode = draw(st.sampled_from(list(Opcode)))
    raw: dict[str, Any] = {
        "id": draw(step_ids),
        "op": draw(st.sampled_from([opcode.value, opcode.value.lower()])),
        "opts": draw(_opts_for(opcode) | st.none()),
    }
    if draw(st.booleans()):
        raw["name"] = draw(time_specs if opcode is Opcode.SLEEP else st.text(max_size=6))
    if draw(st.booleans()):
        raw["data"] = draw(json_values)
    if opcode in (Opcode.STEP_ERROR, Opcode.STEP_FAILED) or draw(st.booleans()):
        raw["error"] = draw(errors)
    return raw


versions = st.sampled_from([-1, 1, 2])
#: What the server's request for a Gateway/AIGateway op came to (``app/drivers/gateway.py``).
gateway_outcomes = st.builds(GatewayOutcome, data=json_values) | st.builds(
    GatewayOutcome,
    error=st.fixed_dictionaries({"name": st.just("GatewayError"), "message": st.text(max_size=8)}),
)
call_results = st.one_of(
    st.builds(
        OpsReported,
        ops=st.lists(raw_ops(), max_size=4).map(parse_ops),
        request_version=versions,
        no_retry=st.booleans(),
        retry_after_ms=st.none() | st.integers(T0, T0 + 10**8),
        performed=st.dictionaries(step_ids, gateway_outcomes, max_size=2),
    ),
    st.builds(FunctionReturned, output=json_values, request_version=versions),
    st.builds(
        CallFailed,
        error=st.fixed_dictionaries({"name": st.just("Error"), "message": st.text(max_size=8)}),
        retryable=st.booleans(),
        retry_after_ms=st.none() | st.integers(T0, T0 + 10**8),
        request_version=versions,
    ),
)
calls = st.builds(
    c.Call,
    step_id=step_ids,
    attempt=st.integers(0, 6),
    max_attempts=st.integers(1, 5),
    started_at=st.integers(T0, T0 + 10**6),
)
commands = st.one_of(
    st.builds(c.HandleCallResult, call=calls, result=call_results),
    st.builds(c.HandleCallResult, call=calls, result=call_results),
    st.builds(c.WakeSleep, step_id=step_ids),
    st.builds(
        c.ResumeWait,
        step_id=step_ids,
        event=st.dictionaries(st.text(max_size=4), json_values, max_size=3),
        event_id=st.text(max_size=6),
    ),
    st.builds(c.TimeOutWait, step_id=step_ids),
    st.builds(
        c.ResumeSignal,
        step_id=step_ids,
        signal=st.sampled_from(["s1", "s2"]),
        data=json_values,
    ),
    st.builds(
        c.CompleteInvoke,
        step_id=step_ids,
        output=json_values,
        child_run_id=st.none() | st.text(max_size=6),
        timed_out=st.booleans(),
    ),
    st.builds(c.CancelRun, reason=st.text(max_size=8)),
    st.builds(c.EnforceTimeout, kind=st.sampled_from(["start", "finish"])),
    st.builds(c.MarkStarted, at=st.integers(T0, T0 + 10**6)),
)


@st.composite
def schedules(draw: st.DrawFn) -> c.ScheduleRun:
    name = draw(st.sampled_from(["app/go", "inngest/function.finished"]))
    return c.ScheduleRun(
        run_id=RUN,
        function_id="fn-uuid",
        function_slug="app-fn",
        function_version=1,
        app_id="app-uuid",
        events=({"name": name, "data": {"n": draw(json_values)}, "id": "e1", "ts": T0},),
        event_ids=("01KBKA0ZM0000000000000EVNT",),
        idempotency_key="e1",
        max_attempts=draw(st.integers(1, 5)),
        steps=draw(st.dictionaries(step_ids, json_values, max_size=2)),
        concurrency=draw(st.sampled_from([(), (("fn-uuid", 2),)])),
        finish_timeout_ms=draw(st.none() | st.integers(1000, 10**6)),
    )


def _context(
    now_ms: int, retry_interval_ms: int | None, signals_taken: frozenset[str] = frozenset()
) -> DecideContext:
    ids = itertools.count()
    return DecideContext(
        now_ms=now_ms,
        new_id=lambda: f"01KBKA0ZM00000000000{next(ids):06d}",
        rand=lambda: 0.5,
        retry_interval_ms=retry_interval_ms,
        signals_taken=signals_taken,
    )


def _assert_codec_round_trip(event: h.HistoryEvent) -> None:
    envelope = encode(event)
    stored = json.loads(json.dumps(envelope.payload))  # what a jsonb column gives back
    assert decode(envelope.type, envelope.schema_version, stored) == event
    assert decode(*envelope) == event


def _assert_memos_stable(state: RunState, memos: dict[str, Any]) -> None:
    for step_id, value in memos.items():
        assert step_id in state.steps and state.steps[step_id] == value, step_id
    memos.update({k: v for k, v in state.steps.items() if k not in memos})
    assert len(state.stack) == len(set(state.stack)), state.stack
    assert set(state.stack) == set(state.steps)


def _run(schedule: c.ScheduleRun, script: list[c.Command], interval: int | None) -> list[Any]:
    """Play ``script`` against a new run, checking the per-step invariants; the history."""
    state, history = RunState(), []
    memos: dict[str, Any] = {}
    for i, command in enumerate([schedule, *script]):
        was_final = state.is_finished
        # Every third decision finds signal "s1" taken by another run (a signal conflict).
        taken = frozenset({"s1"}) if i % 3 == 2 else frozenset()
        decision = decide(state, command, _context(T0 + 1000 * i, interval, taken))
        if was_final:
            assert decision.is_empty, (command, decision)
        for event in decision.events:
            state = evolve(state, event)
            history.append(event)
            assert state.version == len(history)
            _assert_codec_round_trip(event)
        _assert_memos_stable(state, memos)
        assert fold(history) == state
        if state.is_finished:
            assert not state.waiting and not state.pending
    return history


@settings(
    max_examples=400,
    deadline=None,
    database=None,  # no example database left in the work tree
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    schedule=schedules(),
    script=st.lists(commands, max_size=30),
    interval=st.none() | st.just(1000),
)
def test_any_command_sequence_keeps_the_run_state_machine_invariants(
    schedule: c.ScheduleRun, script: list[c.Command], interval: int | None
) -> None:
    history = _run(schedule, script, interval)
    assert isinstance(history[0], h.RunScheduled)
    assert sum(isinstance(e, h.RunScheduled) for e in history) == 1
    assert sum(isinstance(e, h.RunStarted) for e in history) <= 1
    finals = [i for i, e in enumerate(history) if isinstance(e, h.FINAL_TYPES)]
    assert len(finals) <= 1 and (not finals or finals[0] == len(history) - 1), history
    written = collections.Counter(e.step_id for e in history if isinstance(e, MEMO_TYPES))
    for step_id in schedule.steps:
        written[step_id] += 1
    assert all(n == 1 for n in written.values()), written


@settings(max_examples=150, deadline=None, database=None)
@given(schedule=schedules(), script=st.lists(commands, max_size=20))
def test_replaying_a_history_in_any_prefix_gives_the_state_seen_at_that_point(
    schedule: c.ScheduleRun, script: list[c.Command]
) -> None:
    history = _run(schedule, script, 1000)
    state = RunState()
    for n, event in enumerate(history, start=1):
        state = evolve(state, event)
        assert fold(history[:n]) == state
        assert fold(history[n:], fold(history[:n])) == fold(history)


@settings(max_examples=200, deadline=None, database=None)
@given(op=raw_ops(), attempt=st.integers(0, 6))
def test_a_single_op_of_any_shape_is_decided_without_raising(
    op: dict[str, Any], attempt: int
) -> None:
    state = fold(decide(RunState(), _schedule_plain(), _context(T0, None)).events)
    call = c.Call(step_id="step", attempt=attempt, max_attempts=3, started_at=T0)
    result = OpsReported(ops=parse_ops([op]), request_version=2)
    decision = decide(state, c.HandleCallResult(call=call, result=result), _context(T0, None))
    after = fold(decision.events, state)
    assert after.version == state.version + len(decision.events)
    if after.is_finished and isinstance(decision.events[-1], h.RunFailed):
        error = decision.events[-1].error
        assert isinstance(error, dict) and error.get("message"), error


def _schedule_plain() -> c.ScheduleRun:
    return c.ScheduleRun(
        run_id=RUN,
        function_id="fn-uuid",
        function_slug="app-fn",
        function_version=1,
        app_id="app-uuid",
        events=({"name": "app/go", "data": {}, "id": "e1", "ts": T0},),
        event_ids=("01KBKA0ZM0000000000000EVNT",),
        idempotency_key="e1",
        max_attempts=3,
    )
