"""Errors keep every field the SDK sent: driver, decide, history, run state and lifecycle events.

The shapes asserted are the ones the official SDKs send (inngest-py ``ErrorData`` and its
``from_error``, inngest-js ``serializeError``) and what Inngest puts in ``function.failed``
(its StandardError); the Python SDK's integration suite asserts both exactly.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.drivers import http as driver
from domain import commands as c
from domain import history as h
from domain.codec import decode, encode
from domain.decide import decide
from domain.effects import EmitEvent
from domain.opcodes import CallFailed, OpsReported, parse_ops
from domain.parking import INVOKE_TIMEOUT_ERROR
from domain.run import RunStatus, fold
from domain.sdk_errors import sdk_error, standard_error
from tests.unit.test_run_state import T0, call, ctx, run_through, schedule

PY_SDK = {"x-inngest-sdk": "inngest-py:v0.5.19", "x-inngest-req-version": "1"}
JS_SDK = {"x-inngest-sdk": "inngest-js:v4.24.0", "x-inngest-req-version": "2"}

#: inngest-py: a user exception escaping the function body (code "unknown", a traceback).
PY_UNKNOWN = {
    "code": "unknown",
    "message": "intentional failure",
    "name": "MyError",
    "stack": 'Traceback (most recent call last):\n  File "app.py", line 3\nMyError: boom\n',
}
#: inngest-py: a StepError re-raised for an invoke timeout: its stack is null, and stays so.
PY_STEP_ERRORED = {
    "code": "step_errored",
    "message": "Timed out waiting for invoked function to complete",
    "name": "InngestInvokeTimeoutError",
    "stack": None,
}
#: inngest-py ``from_error``: no stack key at all.
PY_UNSERIALIZABLE = {
    "code": "output_unserializable",
    "message": '"step_1" returned unserializable data',
    "name": "OutputUnserializableError",
}
#: inngest-js ``serializeError`` of a NonRetriableError with a cause.
JS_NON_RETRIABLE = {
    "name": "NonRetriableError",
    "message": "nope",
    "stack": "NonRetriableError: nope\n    at file:///app.mjs:10:11",
    "cause": {"name": "Error", "message": "root", "stack": "", "__serialized": True},
    "__serialized": True,
}


def _failed(body: dict[str, Any], headers: dict[str, str], status: int = 500) -> CallFailed:
    result = driver.classify(status, headers, json.dumps(body).encode(), T0)
    assert isinstance(result, CallFailed)
    return result


@pytest.mark.parametrize("body", [PY_UNKNOWN, PY_STEP_ERRORED, PY_UNSERIALIZABLE])
def test_a_python_sdk_error_reply_is_kept_field_for_field(body: dict[str, Any]) -> None:
    result = _failed(body, PY_SDK)
    assert result.error == body
    assert result.reason == "invalid status code: 500"


def test_a_js_sdk_error_reply_keeps_its_cause_and_serialization_marker() -> None:
    result = _failed(JS_NON_RETRIABLE, dict(JS_SDK, **{"x-inngest-no-retry": "true"}), 400)
    assert result.error == JS_NON_RETRIABLE and not result.retryable
    assert result.reason == "NonRetriableError"


def test_an_sdk_error_without_a_name_gets_none_added() -> None:
    # inngest-py ``from_error_code`` sends only code and message; Inngest stores it as sent.
    assert _failed({"code": "url_not_found", "message": "x"}, PY_SDK).error == {
        "code": "url_not_found",
        "message": "x",
    }


def test_a_reply_from_something_that_is_not_an_sdk_is_made_to_read_as_an_error() -> None:
    assert _failed({"detail": "gone", "error": "Bad Gateway"}, {}, 502).error == {
        "detail": "gone",
        "error": "Bad Gateway",
        "name": "Error",
        "message": "Bad Gateway",
    }
    assert sdk_error("upstream died", 502) == {"name": "Error", "message": "upstream died"}
    assert sdk_error(None, 500) == {"name": "Error", "message": "SDK answered HTTP 500"}
    assert sdk_error({"error": {"name": "E", "message": "m", "code": "c"}}) == {
        "name": "E",
        "message": "m",
        "code": "c",
    }


def test_the_standard_error_is_what_inngest_puts_in_function_failed() -> None:
    assert standard_error(PY_UNKNOWN, "invalid status code: 500") == {
        "error": "invalid status code: 500",
        "name": "MyError",
        "message": "intentional failure",
        "stack": PY_UNKNOWN["stack"],
    }
    # A null or empty stack is left out, as Inngest's ``stack,omitempty``; a cause is kept.
    assert standard_error(PY_STEP_ERRORED, "NonRetriableError") == {
        "error": "NonRetriableError",
        "name": "InngestInvokeTimeoutError",
        "message": "Timed out waiting for invoked function to complete",
    }
    assert standard_error(JS_NON_RETRIABLE)["cause"] == JS_NON_RETRIABLE["cause"]
    # The object's own ``error`` text wins; without one and without a reason, the message.
    assert standard_error(INVOKE_TIMEOUT_ERROR)["error"] == INVOKE_TIMEOUT_ERROR["error"]
    assert standard_error({"name": "E", "message": "m"}) == {
        "error": "m",
        "name": "E",
        "message": "m",
    }
    assert standard_error({"code": "x"}, "invalid status code: 500") == {
        "error": "invalid status code: 500",
        "name": "Error",
        "message": "invalid status code: 500",
    }


@pytest.mark.parametrize("body", [PY_UNKNOWN, PY_STEP_ERRORED, PY_UNSERIALIZABLE])
def test_a_failed_run_keeps_the_sdk_error_as_its_output_and_in_function_failed(
    body: dict[str, Any],
) -> None:
    state, _ = run_through(schedule())
    decision = decide(
        state, c.HandleCallResult(call=call(attempt=2), result=_failed(body, PY_SDK)), ctx()
    )
    [final] = [e for e in decision.events if isinstance(e, h.RunFailed)]
    assert final.error == body and final.reason == "invalid status code: 500"
    after = fold(decision.events, state)
    assert after.status is RunStatus.FAILED and after.error == body
    finished, failed = [e.event for e in decision.effects if isinstance(e, EmitEvent)]
    assert [finished["name"], failed["name"]] == [
        "inngest/function.finished",
        "inngest/function.failed",
    ]
    # Inngest's StandardError: the stack only when it is a non-empty string, no code.
    stack = {"stack": body["stack"]} if body.get("stack") else {}
    assert failed["data"]["error"] == {
        "error": "invalid status code: 500",
        "name": body["name"],
        "message": body["message"],
        **stack,
    }
    assert failed["data"]["result"] == body
    assert finished["data"]["error"] == failed["data"]["error"]


def test_run_failed_round_trips_through_the_codec_and_old_rows_still_decode() -> None:
    event = h.RunFailed(at=T0, error=PY_STEP_ERRORED, reason="invalid status code: 500")
    envelope = encode(event)
    assert decode(envelope.type, envelope.schema_version, envelope.payload) == event
    old = decode("RunFailed", 1, {"at": T0, "error": {"name": "E", "message": "m"}})
    assert isinstance(old, h.RunFailed) and old.reason is None


@pytest.mark.parametrize("op", ["StepError", "StepFailed"])
def test_a_step_error_op_is_memoized_with_every_field(op: str) -> None:
    state, _ = run_through(schedule())
    error = dict(PY_UNKNOWN, extra={"n": 1})
    reported = OpsReported(ops=parse_ops([{"id": "s", "op": op, "name": "s", "error": error}]))
    decision = decide(state, c.HandleCallResult(call=call(attempt=2), result=reported), ctx())
    [recorded] = [e for e in decision.events if isinstance(e, h.StepFailed)]
    assert recorded.error == error
    assert fold(decision.events, state).steps["s"] == {"error": error}


def test_a_retried_step_error_keeps_a_null_stack() -> None:
    state, _ = run_through(schedule())
    reported = OpsReported(
        ops=parse_ops([{"id": "s", "op": "StepError", "name": "s", "error": PY_STEP_ERRORED}])
    )
    decision = decide(state, c.HandleCallResult(call=call(), result=reported), ctx())
    [errored] = [e for e in decision.events if isinstance(e, h.StepErrored)]
    assert errored.error == PY_STEP_ERRORED and "stack" in errored.error
