"""Parsing and validating synced function configs (protocol §1.2), both SDKs' shapes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.expressions import validate_expression
from app.registry.register import validate_cron
from domain.errors import InvalidFunctionConfig
from domain.function_config import (
    BatchEvents,
    CancelOn,
    ConcurrencyLimit,
    CronTrigger,
    Debounce,
    EventTrigger,
    FunctionConfig,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    expand_cron,
    parse_function_config,
    trigger_patterns,
)

URL = "http://127.0.0.1:8000/api/inngest"


def _step(slug: str, attempts: int | None = None, url: str = URL) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": "step",
        "name": "step",
        "runtime": {"type": "http", "url": f"{url}?fnId={slug}&stepId=step"},
    }
    if attempts is not None:
        step["retries"] = {"attempts": attempts}
    return {"step": step}


# Captured from inngest-py 0.5.19 serving tests/e2e/apps/py_app.py (nulls already dropped).
PY_FLAKY = {
    "id": "e2e-py-flaky", "name": "flaky", "steps": _step("e2e-py-flaky", 2),
    "triggers": [{"event": "e2e/flaky"}],
}  # fmt: skip
PY_ON_FAILURE = {
    "cancel": [], "concurrency": [], "id": "e2e-py-always-fails-failure",
    "name": "always-fails (failure)", "steps": _step("e2e-py-always-fails-failure", 0),
    "triggers": [{
        "event": "inngest/function.failed",
        "expression": "event.data.function_id == 'e2e-py-always-fails'",
    }],
}  # fmt: skip
PY_CANCELLABLE = {
    "cancel": [{"event": "e2e/cancel", "if": "async.data.id == event.data.id"}],
    "id": "e2e-py-cancellable", "name": "cancellable", "steps": _step("e2e-py-cancellable"),
    "triggers": [{"event": "e2e/cancellable"}],
}  # fmt: skip
PY_ALL_OPTIONS = {
    "cancel": [{"event": "a/cancel", "if": "async.data.id == event.data.id", "timeout": "1d"}],
    "concurrency": [
        {"key": "event.data.k", "limit": 2, "scope": "account"}, {"limit": 5},
    ],
    "debounce": {"key": "event.data.d", "period": "5s", "timeout": "1m"},
    "id": "full-py-all", "idempotency": "event.data.i", "name": "All options",
    "priority": {"run": "event.data.p"},
    "rateLimit": {"key": "event.data.u", "limit": 10, "period": "1h"},
    "steps": _step("full-py-all", 7),
    "throttle": {"key": "event.data.t", "limit": 3, "period": "1m", "burst": 2},
    "timeouts": {"start": "10s", "finish": "1h"},
    "singleton": {"key": "event.data.s", "mode": "skip"},
    "triggers": [
        {"event": "a/b.c", "expression": "event.data.x == 1"},
        {"cron": "TZ=Europe/Paris 0 9 * * 1"},
    ],
}  # fmt: skip
PY_BATCH = {
    "batchEvents": {"maxSize": 10, "timeout": "5s", "key": "event.data.k", "if": "event.data.ok"},
    "id": "full-py-batch", "name": "batch", "steps": _step("full-py-batch"),
    "triggers": [{"event": "a/batch"}],
}  # fmt: skip

# Captured from inngest (JS) 4.24.0: key order differs, concurrency may be a number or object,
# the onFailure handler gets 1 retry, and cancelOn.match arrives as an `if` expression.
TS_ON_FAILURE = {
    "id": "e2e-node-always-fails-failure", "name": "always-fails (failure)",
    "triggers": [{
        "event": "inngest/function.failed",
        "expression": "event.data.function_id == 'e2e-node-always-fails'",
    }],
    "steps": _step("e2e-node-always-fails-failure", 1),
}  # fmt: skip
TS_ALL_OPTIONS = {
    "id": "full-node-all", "name": "All options",
    "triggers": [{"event": "a/b.c", "expression": "event.data.x == 1"}, {"cron": "0 9 * * 1"}],
    "steps": _step("full-node-all", 7),
    "idempotency": "event.data.i",
    "rateLimit": {"limit": 10, "period": "1h", "key": "event.data.u"},
    "throttle": {"limit": 3, "period": "1m", "burst": 2, "key": "event.data.t"},
    "concurrency": [{"limit": 2, "key": "event.data.k", "scope": "account"}, {"limit": 5}],
    "debounce": {"period": "5s", "key": "event.data.d", "timeout": "1m"},
    "priority": {"run": "event.data.p"},
    "timeouts": {"start": "10s", "finish": "1h"},
    "singleton": {"mode": "skip", "key": "event.data.s"},
    "cancel": [
        {"event": "a/cancel", "timeout": "1d", "if": "event.data.id == async.data.id"},
        {"event": "a/cancel2", "if": "async.data.x == event.data.x"},
    ],
}  # fmt: skip
TS_BATCH_NUMBER_CONCURRENCY = {
    "id": "full-node-batch", "name": "batch", "triggers": [{"event": "a/batch"}],
    "steps": _step("full-node-batch"),
    "batchEvents": {"maxSize": 10, "timeout": "5s", "key": "event.data.k", "if": "event.data.ok"},
    "concurrency": 3,
}  # fmt: skip
TS_CRON_OBJECT_CONCURRENCY = {
    "id": "full-node-conc-obj", "name": "conc-obj",
    "triggers": [{"cron": "*/5 * * * *", "jitter": "30s"}],
    "steps": _step("full-node-conc-obj"),
    "concurrency": {"limit": 4, "key": "event.data.k"},
}  # fmt: skip


def parse(raw: Any, index: int = 0) -> FunctionConfig:
    return parse_function_config(
        raw, validate_expression=validate_expression, validate_cron=validate_cron, index=index
    )


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def test_python_function_takes_its_retries_from_the_step() -> None:
    config = parse(PY_FLAKY)
    assert config.slug == "e2e-py-flaky"
    assert config.name == "flaky"
    assert config.triggers == (EventTrigger(event="e2e/flaky"),)
    assert config.step_url == f"{URL}?fnId=e2e-py-flaky&stepId=step"
    assert config.runtime_type == "http"
    assert (config.retries, config.max_attempts) == (2, 3)
    assert config.raw is PY_FLAKY


def test_missing_retries_default_to_four() -> None:
    assert parse(PY_CANCELLABLE).retries == 4


def test_function_level_retries_are_used_when_the_step_has_none() -> None:
    assert parse(with_changes(PY_CANCELLABLE, retries=7)).retries == 7


def test_step_retries_win_over_function_level_retries() -> None:
    assert parse(with_changes(PY_FLAKY, retries=9)).retries == 2


@pytest.mark.parametrize(("attempts", "expected"), [(50, 20), (-3, 0), (20, 20)])
def test_retries_are_clamped_to_between_zero_and_twenty(attempts: int, expected: int) -> None:
    raw = with_changes(PY_FLAKY, steps=_step("e2e-py-flaky", attempts))
    assert parse(raw).retries == expected


def test_python_on_failure_handler_with_empty_lists_parses() -> None:
    config = parse(PY_ON_FAILURE)
    assert config.retries == 0
    assert config.cancel == ()
    assert config.concurrency == ()
    assert config.event_triggers == (
        EventTrigger(
            event="inngest/function.failed",
            expression="event.data.function_id == 'e2e-py-always-fails'",
        ),
    )


def test_typescript_on_failure_handler_parses_with_one_retry() -> None:
    config = parse(TS_ON_FAILURE)
    assert config.slug == "e2e-node-always-fails-failure"
    assert config.retries == 1


def test_python_cancel_uses_if() -> None:
    assert parse(PY_CANCELLABLE).cancel == (
        CancelOn(event="e2e/cancel", if_expr="async.data.id == event.data.id"),
    )


@pytest.mark.parametrize("raw", [PY_ALL_OPTIONS, TS_ALL_OPTIONS], ids=["python", "typescript"])
def test_every_flow_control_option_is_parsed_from_both_sdks(raw: dict[str, Any]) -> None:
    config = parse(raw)
    assert config.concurrency == (
        ConcurrencyLimit(limit=2, key="event.data.k", scope="account"),
        ConcurrencyLimit(limit=5),
    )
    assert config.throttle == Throttle(limit=3, period_ms=60_000, burst=2, key="event.data.t")
    assert config.debounce == Debounce(period_ms=5000, key="event.data.d", timeout_ms=60_000)
    assert config.priority_run == "event.data.p"
    assert config.timeouts == Timeouts(start_ms=10_000, finish_ms=3_600_000)
    assert config.singleton == Singleton(mode="skip", key="event.data.s")
    assert config.cancel[0].timeout == "1d"
    assert config.retries == 7
    assert len(config.event_triggers) == 1
    assert len(config.cron_triggers) == 1


def test_idempotency_is_a_one_per_day_rate_limit_and_is_kept() -> None:
    config = parse(PY_ALL_OPTIONS)
    assert config.idempotency == "event.data.i"
    assert config.rate_limit == RateLimit(limit=1, period_ms=86_400_000, key="event.data.i")


def test_rate_limit_without_idempotency() -> None:
    config = parse(with_changes(PY_ALL_OPTIONS, idempotency=None))
    assert config.rate_limit == RateLimit(limit=10, period_ms=3_600_000, key="event.data.u")
    assert config.idempotency is None


@pytest.mark.parametrize("raw", [PY_BATCH, TS_BATCH_NUMBER_CONCURRENCY], ids=["python", "ts"])
def test_batch_events_are_parsed(raw: dict[str, Any]) -> None:
    assert parse(raw).batch_events == BatchEvents(
        max_size=10, timeout_ms=5000, key="event.data.k", if_expr="event.data.ok"
    )


def test_concurrency_may_be_a_number_or_an_object() -> None:
    assert parse(TS_BATCH_NUMBER_CONCURRENCY).concurrency == (ConcurrencyLimit(limit=3),)
    assert parse(TS_CRON_OBJECT_CONCURRENCY).concurrency == (
        ConcurrencyLimit(limit=4, key="event.data.k"),
    )


def test_cron_trigger_keeps_its_jitter() -> None:
    config = parse(TS_CRON_OBJECT_CONCURRENCY)
    assert config.triggers == (CronTrigger(cron="*/5 * * * *", jitter="30s"),)
    assert config.event_triggers == ()


def test_keys_of_config_objects_match_case_insensitively() -> None:
    raw = with_changes(
        PY_CANCELLABLE,
        cancel=None,
        RATELIMIT={"LIMIT": 2, "Period": "1m"},
        batchevents={"max_size": 3, "TimeOut": "2s"},
    )
    config = parse(raw)
    assert config.rate_limit == RateLimit(limit=2, period_ms=60_000)
    assert config.batch_events == BatchEvents(max_size=3, timeout_ms=2000)


def test_null_fields_count_as_absent() -> None:
    raw = with_changes(
        PY_FLAKY, concurrency=None, cancel=None, debounce=None, priority=None, rateLimit=None
    )
    raw.update({"debounce": None, "throttle": None, "batchEvents": None, "timeouts": None})
    config = parse(raw)
    assert (config.debounce, config.throttle, config.batch_events, config.timeouts) == (
        None,
        None,
        None,
        None,
    )


def test_websocket_step_url_is_a_ws_runtime() -> None:
    steps = {"step": {"id": "step", "name": "step", "runtime": {"url": "wss://connect?fnId=x"}}}
    assert parse(with_changes(PY_FLAKY, steps=steps)).runtime_type == "ws"


def test_throttle_burst_defaults_to_one() -> None:
    raw = with_changes(PY_FLAKY, throttle={"limit": 1, "period": "1s"})
    assert parse(raw).throttle == Throttle(limit=1, period_ms=1000, burst=1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": None}, "functions[3].id"),
        ({"name": 5}, "functions[3].name"),
        ({"steps": {}}, "functions[3].steps"),
        ({"steps": {**_step("a"), "two": _step("b")["step"]}}, "functions[3].steps"),
        ({"steps": _step("a", url="ftp://host/x")}, "functions[3].steps.step.runtime.url"),
        ({"steps": {"step": {"id": "step", "runtime": {}}}}, "functions[3].steps.step.runtime.url"),
        ({"triggers": [{"event": ""}]}, "functions[3].triggers[0].event"),
        ({"triggers": [{"event": "e" * 256}]}, "functions[3].triggers[0].event"),
        ({"triggers": [{}]}, "functions[3].triggers[0]"),
        ({"triggers": [{"event": "a", "cron": "* * * * *"}]}, "functions[3].triggers[0]"),
        ({"triggers": [{"event": f"e/{i}"} for i in range(11)]}, "functions[3].triggers"),
        ({"triggers": [{"event": "a"}, {"event": "a"}]}, "functions[3].triggers[1]"),
        ({"triggers": [{"cron": "0 * * * *"}, {"cron": "0 * * * *", "jitter": "5s"}]},
         "functions[3].triggers[1]"),
        ({"triggers": [{"event": "a", "expression": "event.data.x =="}]},
         "functions[3].triggers[0].expression"),
        ({"triggers": [{"event": "a", "expression": "nope.x == 1"}]},
         "functions[3].triggers[0].expression"),
        ({"triggers": [{"cron": "61 * * * *"}]}, "functions[3].triggers[0].cron"),
        ({"triggers": [{"cron": "* * * *"}]}, "functions[3].triggers[0].cron"),
        ({"triggers": [{"cron": "TZ=Mars/Base 0 * * * *"}]}, "functions[3].triggers[0].cron"),
        ({"triggers": [{"cron": "@fortnightly"}]}, "functions[3].triggers[0].cron"),
        ({"triggers": [{"cron": "* * * * *", "jitter": "500ms"}]},
         "functions[3].triggers[0].jitter"),
        ({"triggers": [{"cron": "* * * * *", "jitter": "6m"}]}, "functions[3].triggers[0].jitter"),
        ({"triggers": [{"cron": "* * * * *", "jitter": "soon"}]},
         "functions[3].triggers[0].jitter"),
        ({"concurrency": [{"limit": 1}, {"limit": 2}, {"limit": 3}]}, "functions[3].concurrency"),
        ({"concurrency": [{"limit": 1, "scope": "env"}]}, "functions[3].concurrency[0].key"),
        ({"concurrency": {"limit": 1, "scope": "galaxy", "key": "event.id"}},
         "functions[3].concurrency.scope"),
        ({"concurrency": -1}, "functions[3].concurrency.limit"),
        ({"concurrency": "5"}, "functions[3].concurrency"),
        ({"concurrency": [{"limit": 1, "key": "event.data.x +"}]},
         "functions[3].concurrency[0].key"),
        ({"rateLimit": {"limit": 0, "period": "1h"}}, "functions[3].rateLimit.limit"),
        ({"rateLimit": {"limit": 1, "period": "25h"}}, "functions[3].rateLimit.period"),
        ({"rateLimit": {"limit": 1}}, "functions[3].rateLimit.period"),
        ({"idempotency": "event.data.id =="}, "functions[3].idempotency"),
        ({"throttle": {"limit": 1, "period": "never"}}, "functions[3].throttle.period"),
        ({"debounce": {"period": "500ms"}}, "functions[3].debounce.period"),
        ({"debounce": {"period": "8d"}}, "functions[3].debounce.period"),
        ({"debounce": {"period": "5s", "key": "event.("}}, "functions[3].debounce.key"),
        ({"batchEvents": {"maxSize": 1, "timeout": "5s"}}, "functions[3].batchEvents.maxSize"),
        ({"batchEvents": {"maxSize": 5, "timeout": "500ms"}}, "functions[3].batchEvents.timeout"),
        ({"batchEvents": {"maxSize": 5, "timeout": "5s"}, "cancel": [{"event": "a"}]},
         "functions[3].batchEvents"),
        ({"batchEvents": {"maxSize": 5, "timeout": "5s"}, "debounce": {"period": "5s"}},
         "functions[3].batchEvents"),
        ({"batchEvents": {"maxSize": 5, "timeout": "5s"}, "singleton": {"mode": "skip"}},
         "functions[3].batchEvents"),
        ({"batchEvents": {"maxSize": 5, "timeout": "5s"}, "priority": {"run": "event.data.p"}},
         "functions[3].batchEvents"),
        ({"cancel": [{"event": f"c/{i}"} for i in range(6)]}, "functions[3].cancel"),
        ({"cancel": [{"if": "event.data.a == async.data.a"}]}, "functions[3].cancel[0].event"),
        ({"cancel": [{"event": "c", "if": "async.data.a =="}]}, "functions[3].cancel[0].if"),
        ({"cancel": [{"event": "c", "timeout": "later"}]}, "functions[3].cancel[0].timeout"),
        ({"priority": {"run": "event.data.p +"}}, "functions[3].priority.run"),
        ({"timeouts": {"start": "soon"}}, "functions[3].timeouts.start"),
        ({"timeouts": {"finish": 10}}, "functions[3].timeouts.finish"),
        ({"singleton": {"mode": "queue"}}, "functions[3].singleton.mode"),
        ({"singleton": {"mode": "skip", "key": "event.data.("}}, "functions[3].singleton.key"),
        ({"retries": "many", "steps": _step("e2e-py-cancellable")}, "functions[3].retries"),
    ],
)  # fmt: skip
def test_invalid_configs_name_the_field(changes: dict[str, Any], field: str) -> None:
    raw = with_changes(PY_CANCELLABLE, cancel=None)
    raw.update(changes)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(InvalidFunctionConfig) as caught:
        parse(raw, index=3)
    assert caught.value.field == field
    assert str(caught.value).startswith(field)


def test_a_config_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidFunctionConfig) as caught:
        parse(["not", "an", "object"], index=2)
    assert caught.value.field == "functions[2]"


@pytest.mark.parametrize(
    "cron",
    [
        "*/5 * * * *", "0 9 * * MON-FRI", "0 0 1 JAN *", "TZ=Europe/Paris 0 9 * * 1",
        "CRON_TZ=America/New_York 30 6 * * *", "@hourly", "@daily", "@weekly", "0 0 ? * *",
    ],
)  # fmt: skip
def test_valid_cron_schedules_are_accepted(cron: str) -> None:
    raw = with_changes(PY_FLAKY, triggers=[{"cron": cron, "jitter": "1s"}])
    assert parse(raw).triggers == (CronTrigger(cron=cron, jitter="1s"),)


def test_expand_cron_splits_the_time_zone_and_expands_descriptors() -> None:
    assert expand_cron("TZ=Europe/Paris @daily") == ("Europe/Paris", "0 0 * * *")
    assert expand_cron("*/5 * * * *") == (None, "*/5 * * * *")


def test_an_event_and_an_expression_on_the_same_event_are_distinct_triggers() -> None:
    triggers = [{"event": "a"}, {"event": "a", "expression": "event.data.x == 1"}]
    assert len(parse(with_changes(PY_FLAKY, triggers=triggers)).triggers) == 2


def test_stored_configs_reparse_without_the_expression_compiler() -> None:
    def refuse(_: str) -> None:
        raise AssertionError("must not be called")

    raw = with_changes(PY_FLAKY, triggers=[{"event": "a"}])
    config = parse_function_config(raw, validate_expression=lambda _: None)
    assert config.triggers == (EventTrigger(event="a"),)
    with pytest.raises(AssertionError):
        parse_function_config(PY_ALL_OPTIONS, validate_expression=refuse)


@pytest.mark.parametrize(
    ("name", "patterns"),
    [
        ("app/user.created", ["app/user.created", "app/*", "app/user.*"]),
        ("api/v1/users", ["api/v1/users", "api/*", "api/v1/*"]),
        ("user.updated", ["user.updated", "user.*"]),
        ("simple", ["simple"]),
        ("e2e/wild.x.y", ["e2e/wild.x.y", "e2e/*", "e2e/wild.*", "e2e/wild.x.*"]),
    ],
)
def test_trigger_patterns_list_the_event_and_its_wildcards(name: str, patterns: list[str]) -> None:
    assert trigger_patterns(name) == patterns
