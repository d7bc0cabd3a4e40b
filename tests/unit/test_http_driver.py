"""The HTTP driver: request building (protocol §2.1) and reply classification (§2.2)."""

from __future__ import annotations

import json

import httpx
import pytest

from app.drivers import http as driver
from domain import history as h
from domain.opcodes import CallFailed, FunctionReturned, Opcode, OpsReported
from domain.run import fold

T0 = 1_800_000_000_000
SDK = {"x-inngest-sdk": "inngest-py:v0.5.19", "x-inngest-req-version": "2"}


def state(**overrides: object):  # type: ignore[no-untyped-def]
    scheduled = h.RunScheduled(
        at=T0,
        run_id="01KBKA0ZM00000000000000000",
        function_id="fn",
        function_slug="a-f",
        function_version=1,
        app_id="app",
        events=({"name": "e/x", "data": {"n": 1}, "id": "i", "ts": T0},),
        event_ids=("01KBKA0ZM0000000000000EVNT",),
        idempotency_key="i",
        max_attempts=5,
    )
    done = h.StepCompleted(
        at=T0, step_id="s1", name="a", output={"data": 1}, attempt=0, started_at=T0
    )
    return fold([scheduled, h.RunStarted(at=T0, request_version=2), done])


def test_step_url_replaces_step_id_and_keeps_other_parameters() -> None:
    url = driver.step_url("http://h:1/api?deployId=abc&fnId=app-f&stepId=step", "abc123")
    assert url == "http://h:1/api?deployId=abc&fnId=app-f&stepId=abc123"


def test_the_request_body_carries_what_both_sdks_require() -> None:
    req = driver.build_request(
        state(),
        base_url="http://h/api?fnId=a-f&stepId=step",
        step_id="step",
        attempt=2,
        job_id="j",
        item_id=7,
        server_kind="dev",
        signing_key=None,
    )
    body = json.loads(req.body)
    assert body["event"]["ts"] == T0 and body["event"]["user"] == {}
    assert body["steps"] == {"s1": {"data": 1}} and body["use_api"] is False
    ctx = body["ctx"]
    assert ctx["attempt"] == 2 and ctx["max_attempts"] == 5
    assert ctx["stack"] == {"stack": ["s1"], "current": 1}
    assert ctx["disable_immediate_execution"] is False and "fn_id" not in ctx
    assert body["version"] == 2
    assert req.headers["X-Run-ID"] == "01KBKA0ZM00000000000000000"
    assert "X-Inngest-Signature" not in req.headers


def test_a_request_over_four_mebibytes_asks_the_sdk_to_fetch_state_itself() -> None:
    big = h.StepCompleted(
        at=T0, step_id="big", name="b", output={"data": "x" * 5_000_000}, attempt=0, started_at=T0
    )
    s = fold([big], state())
    req = driver.build_request(
        s,
        base_url="http://h/api",
        step_id="step",
        attempt=0,
        job_id="j",
        item_id=1,
        server_kind="dev",
        signing_key=None,
    )
    body = json.loads(req.body)
    assert body["use_api"] is True and body["ctx"]["use_api"] is True
    assert body["steps"] == {} and body["events"] == [] and body["event"]["name"] == "e/x"


def test_signed_requests_verify_with_the_python_sdk() -> None:
    from inngest._internal import net

    key = "signkey-test-12345678"
    req = driver.build_request(
        state(),
        base_url="http://h/api",
        step_id="step",
        attempt=0,
        job_id="j",
        item_id=1,
        server_kind="cloud",
        signing_key=key,
    )
    request = httpx.Request("POST", req.url, content=req.body, headers=req.headers)
    verified = net.validate_request_sig(
        body=req.body,
        headers={k.lower(): v for k, v in request.headers.items()},
        mode=net.server_lib.ServerKind.CLOUD,
        signing_key=key,
        signing_key_fallback=None,
    )
    assert not isinstance(verified, Exception), verified


def test_200_from_an_sdk_is_the_function_return_value() -> None:
    result = driver.classify(200, SDK, b'{"ok":1}', T0)
    assert result == FunctionReturned(output={"ok": 1}, request_version=2)


def test_206_is_a_list_of_ops_and_a_bare_object_is_accepted() -> None:
    result = driver.classify(206, SDK, b'{"id":"a","op":"steprun","data":3}', T0)
    assert isinstance(result, OpsReported) and result.ops[0].op is Opcode.STEP_RUN


def test_a_2xx_without_the_sdk_header_is_a_retryable_failure() -> None:
    result = driver.classify(200, {}, b"<html>proxy</html>", T0)
    assert isinstance(result, CallFailed) and result.retryable


@pytest.mark.parametrize(("header", "retryable"), [(None, True), ("false", True), ("true", False)])
def test_error_replies_are_retryable_unless_the_sdk_says_no_retry(
    header: str | None, retryable: bool
) -> None:
    headers = dict(SDK, **({"x-inngest-no-retry": header} if header else {}))
    body = b'{"name":"ValueError","message":"bad","stack":"tb","code":"x"}'
    result = driver.classify(500, headers, body, T0)
    assert isinstance(result, CallFailed) and result.retryable is retryable
    assert result.error == {"name": "ValueError", "message": "bad", "stack": "tb"}


def test_retry_after_seconds_sets_the_retry_time() -> None:
    result = driver.classify(500, dict(SDK, **{"retry-after": "30"}), b"{}", T0)
    assert isinstance(result, CallFailed) and result.retry_after_ms == T0 + 30_000


def test_a_streamed_201_is_unwrapped_and_handled_as_its_inner_status() -> None:
    inner = json.dumps(
        {
            "status": 206,
            "body": json.dumps([{"id": "a", "op": "StepRun", "data": 1}]),
            "headers": {},
        }
    )
    result = driver.classify(201, SDK, b"  \n " + inner.encode(), T0)
    assert isinstance(result, OpsReported) and result.ops[0].id == "a"
