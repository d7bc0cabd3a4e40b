"""``step.fetch`` / ``step.ai.infer``: building the server's request, shaping the memo, deciding.

The outbound client runs on ``httpx.MockTransport``: each test's handler sees exactly what
would go on the wire.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable

import httpx
import pytest

from app.drivers import gateway as g
from domain import commands as c
from domain import history as h
from domain.codec import decode
from domain.decide import decide
from domain.effects import Enqueue, RetryCall
from domain.opcodes import GatewayOutcome, Op, OpsReported, parse_op
from domain.run import fold
from projections.traces import SpanStatus, StepOp, fold_trace
from tests.unit.test_run_state import T0, call, ctx, run_through, schedule

KEY = "sk-secret-provider-key-123"


def ai_op(**opts: object) -> Op:
    base: dict[str, object] = {
        "type": "step.ai.infer",
        "url": "https://llm.test/v1/chat/completions",
        "auth_key": KEY,
        "format": "openai-chat",
        "headers": {},
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    return parse_op({"id": "ai1", "op": "AIGateway", "name": "ask", "opts": {**base, **opts}})


def fetch_op(**opts: object) -> Op:
    base: dict[str, object] = {"url": "https://api.test/things?x=1", "method": "GET", "headers": {}}
    return parse_op({"id": "f1", "op": "Gateway", "name": "get", "opts": {**base, **opts}})


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> httpx.AsyncClient:
    # The server's client configuration, on a transport that answers instead of dialling.
    return g.new_client(read_timeout=5, transport=httpx.MockTransport(handler))


# --- building the request ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "header", "value"),
    [
        ("openai-chat", "authorization", f"Bearer {KEY}"),
        ("anthropic", "x-api-key", KEY),
        ("bedrock", "authorization", KEY),
    ],
)
def test_ai_requests_carry_the_key_where_the_format_wants_it(
    fmt: str, header: str, value: str
) -> None:
    request = g.build_ai(ai_op(format=fmt, headers={"anthropic-version": "2023-06-01"}).opts)
    headers = {k.lower(): v for k, v in request.headers}
    assert request.method == "POST" and headers[header] == value
    assert headers["content-type"] == "application/json"
    assert headers["anthropic-version"] == "2023-06-01"
    assert json.loads(request.body or b"") == ai_op().opts["body"]


def test_header_names_go_out_in_gos_canonical_form() -> None:
    # The Python SDK's own ai_infer test reads the provider request's headers by exact name.
    opts = ai_op(format="anthropic", headers={"x-my-header": "v", "bad name": "w"}).opts
    names = [k for k, _ in g.build_ai(opts).headers]
    assert {"X-Api-Key", "X-My-Header", "Content-Type", "User-Agent", "bad name"} <= set(names)
    assert g.canonical_header("WWW-authenticate") == "Www-Authenticate"


def test_gemini_puts_the_key_in_the_query_once_with_names_sorted() -> None:
    url = f"https://llm.test/v1beta/models/g:generateContent?key={KEY}&alt=json"
    request = g.build_ai(ai_op(format="gemini", url=url).opts)
    assert request.url == f"https://llm.test/v1beta/models/g:generateContent?alt=json&key={KEY}"
    assert not any(k.lower() == "authorization" for k, _ in request.headers)


def test_given_headers_replace_the_defaults_of_the_same_name() -> None:
    request = g.build_ai(ai_op(headers={"Authorization": "Custom x"}).opts)
    assert [v for k, v in request.headers if k.lower() == "authorization"] == ["Custom x"]


def test_the_key_never_shows_in_a_request_repr() -> None:
    assert KEY not in repr(g.build_ai(ai_op(format="gemini").opts))


def test_fetch_defaults_to_post_and_sends_the_body_as_given() -> None:
    request = g.build_fetch({"url": "http://h.test/x", "body": "a=1&b=2"})
    assert request.method == "POST" and request.body == b"a=1&b=2"
    assert g.build_fetch({"url": "http://h.test/x", "method": "delete"}).method == "DELETE"


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"url": 5},
        {"url": "ftp://h.test/x"},
        {"url": "/relative"},
        {"url": "http://h.test", "method": "BREW"},
        {"url": "http://h.test", "headers": {"a": 1}},
        {"url": "http://h.test", "headers": ["a"]},
        {"url": "http://h.test", "body": {"not": "a string"}},
    ],
)
def test_a_fetch_that_describes_no_request_is_refused(opts: dict[str, object]) -> None:
    with pytest.raises(g.InvalidGatewayRequest):
        g.build_fetch(opts)


def test_canonical_header_names_are_gos() -> None:
    assert g.canonical_header("content-type") == "Content-Type"
    assert g.canonical_header("X-REQUEST-ID") == "X-Request-Id"


# --- making it and shaping the memo ---------------------------------------------------------


async def test_a_fetch_memoizes_status_headers_and_body_even_for_a_404() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            404, headers=[("x-a", "1"), ("X-A", "2"), ("set-cookie", "s=1")], content=b"nope"
        )

    async with client(handler) as http:
        outcome = await g.perform(http, fetch_op(headers={"x-token": "t"}))
        again = await g.perform(http, fetch_op())
    assert outcome == GatewayOutcome(
        data={
            "url": "https://api.test/things?x=1",
            "headers": {"X-A": "1,2", "Set-Cookie": "s=1", "Content-Length": "4"},
            "body": "nope",
            "status_code": 404,
        }
    )
    assert again.error is None
    assert seen[0].method == "GET" and seen[0].headers["x-token"] == "t"
    assert seen[0].headers["user-agent"] == "Inngest"
    assert "cookie" not in seen[1].headers  # nothing is carried from one request to the next


async def test_a_decoded_body_loses_its_encoding_headers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-encoding": "gzip"}, content=gzip.compress(b"ok")
        )

    async with client(handler) as http:
        outcome = await g.perform(http, fetch_op())
    assert outcome.data["body"] == "ok"
    assert "headers" not in outcome.data  # Content-Encoding and Content-Length were dropped


async def test_a_refused_connection_is_upstreams_gateway_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with client(handler) as http:
        outcome = await g.perform(http, fetch_op())
    assert outcome.error == {
        "name": "GatewayError",
        "message": "Error making gateway request: Unable to reach SDK URL",
    }


async def test_an_oversized_answer_is_an_error_not_a_memo() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * (g.MAX_RESPONSE_BYTES + 1))

    async with client(handler) as http:
        outcome = await g.perform(http, fetch_op())
    assert outcome.error is not None and "greater than the limit" in outcome.error["message"]


async def test_an_ai_answer_is_memoized_as_the_providers_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "hello"}}]})

    async with client(handler) as http:
        outcome = await g.perform(http, ai_op())
    assert outcome == GatewayOutcome(data={"choices": [{"message": {"content": "hello"}}]})
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(seen[0].content) == ai_op().opts["body"]


async def test_a_provider_4xx_is_an_ai_gateway_error_with_its_body_and_no_key() -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json=body)

    async with client(handler) as http:
        outcome = await g.perform(http, ai_op())
    error = outcome.error
    assert error is not None and error["name"] == "AIGatewayError"
    assert error["message"] == "Error making AI request: unsuccessful status code: 401"
    assert error["data"] == {
        "error": {"message": "Incorrect API key provided: [redacted]", "type": "invalid"}
    }
    assert KEY not in json.dumps(error)


@pytest.mark.parametrize(
    ("status", "content", "message"),
    [
        (200, b"not json", "Error making AI request: the response body is not JSON"),
        (500, b"", "Error making AI request: unsuccessful status code: 500"),
    ],
)
async def test_an_ai_answer_that_is_no_result_is_an_error(
    status: int, content: bytes, message: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content)

    async with client(handler) as http:
        outcome = await g.perform(http, ai_op())
    assert outcome.error is not None and outcome.error["message"] == message


async def test_an_ai_op_without_a_url_fails_without_a_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be made")

    async with client(handler) as http:
        outcome = await g.perform(http, ai_op(url=None))
    assert outcome.error is not None
    assert outcome.error["message"] == "Error making AI request: a url is required"
    assert outcome.error["stack"] == g.DEFAULT_AI_ERROR_BODY


async def test_perform_ops_skips_memoized_and_other_ops() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json={})

    reported = OpsReported(
        ops=(ai_op(), fetch_op(), parse_op({"id": "s", "op": "StepRun", "data": 1}))
    )
    async with client(handler) as http:
        done = await g.perform_ops(http, reported, {"f1"})
        untouched = await g.perform_ops(http, OpsReported(ops=(fetch_op(),)), {"f1"})
    assert set(done.performed) == {"ai1"} and len(calls) == 1
    assert untouched.performed == {}


# --- deciding -----------------------------------------------------------------------------


def reported(op: Op, outcome: GatewayOutcome | None) -> OpsReported:
    return OpsReported(
        ops=(op,), request_version=2, performed={} if outcome is None else {op.id: outcome}
    )


def test_a_successful_request_is_memoized_as_data_and_the_sdk_called_again() -> None:
    state, _ = run_through(schedule())
    result = reported(ai_op(), GatewayOutcome(data={"answer": 42}))
    decision = decide(state, c.HandleCallResult(call=call(), result=result), ctx())
    [completed] = [e for e in decision.events if isinstance(e, h.StepCompleted)]
    assert completed.output == {"data": {"answer": 42}} and completed.op == "AIGateway"
    assert any(isinstance(e, Enqueue) for e in decision.effects)
    state = fold(decision.events, state)
    assert state.steps["ai1"] == {"data": {"answer": 42}}
    # A second report of the same op (a racing retry) changes nothing: first write wins.
    again = decide(state, c.HandleCallResult(call=call(), result=result), ctx())
    assert not any(isinstance(e, h.StepCompleted) for e in again.events)


def test_a_failed_request_retries_the_call_then_memoizes_the_error() -> None:
    state, _ = run_through(schedule())
    error = {"name": "GatewayError", "message": "Error making gateway request: Unable to reach"}
    result = reported(fetch_op(), GatewayOutcome(error=error))
    first = decide(state, c.HandleCallResult(call=call(attempt=0), result=result), ctx())
    assert [type(e) for e in first.events if not isinstance(e, h.RunStarted)] == [h.StepErrored]
    [retry] = [e for e in first.effects if isinstance(e, RetryCall)]
    assert retry.attempt == 1 and retry.available_at == T0 + 1000
    state = fold(first.events, state)
    assert "f1" not in state.steps
    last = decide(state, c.HandleCallResult(call=call(attempt=2), result=result), ctx())
    [failed] = [e for e in last.events if isinstance(e, h.StepFailed)]
    assert failed.error == error and not any(isinstance(e, RetryCall) for e in last.effects)
    assert fold(last.events, state).steps["f1"] == {"error": error}


def test_several_failed_requests_in_one_response_retry_the_call_once() -> None:
    state, _ = run_through(schedule())
    ops = (fetch_op(), parse_op({**_raw(fetch_op()), "id": "f2"}))
    error = {"name": "GatewayError", "message": "x"}
    result = OpsReported(
        ops=ops, request_version=2, performed={op.id: GatewayOutcome(error=error) for op in ops}
    )
    decision = decide(state, c.HandleCallResult(call=call(), result=result), ctx())
    assert len([e for e in decision.events if isinstance(e, h.StepErrored)]) == 2
    assert len([e for e in decision.effects if isinstance(e, RetryCall)]) == 1


def test_an_op_whose_request_was_not_made_is_retried_not_recorded() -> None:
    state, _ = run_through(schedule())
    decision = decide(state, c.HandleCallResult(call=call(), result=reported(ai_op(), None)), ctx())
    [errored] = [e for e in decision.events if isinstance(e, h.StepErrored)]
    assert errored.error["name"] == "AIGatewayError"


def _raw(op: Op) -> dict[str, object]:
    return {"id": op.id, "op": op.op.value, "name": op.name, "opts": dict(op.opts)}


async def test_the_http_libraries_log_nothing_about_a_gateway_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    caplog.set_level(logging.DEBUG)
    url = f"https://llm.test/v1beta/models/g:generateContent?key={KEY}"
    async with client(handler) as http:
        await g.perform(http, ai_op(format="gemini", url=url))
        assert KEY not in caplog.text
        await http.get("https://other.test/")  # the same client outside a gateway request
    assert "https://other.test/" in caplog.text  # logs as usual


def test_parallel_requests_are_all_memoized_and_the_sdk_called_again_once() -> None:
    state, _ = run_through(schedule())
    ops = (fetch_op(), parse_op({**_raw(fetch_op()), "id": "f2"}))
    result = OpsReported(
        ops=ops,
        request_version=2,
        performed={"f1": GatewayOutcome(data=1), "f2": GatewayOutcome(data=2)},
    )
    decision = decide(state, c.HandleCallResult(call=call(), result=result), ctx())
    state = fold(decision.events, state)
    assert state.steps == {"f1": {"data": 1}, "f2": {"data": 2}}
    assert len([e for e in decision.effects if isinstance(e, Enqueue)]) == 1


# --- how the run shows it -----------------------------------------------------------------


def test_a_gateway_step_that_failed_for_good_is_shown_as_an_ai_gateway_span() -> None:
    error = {"name": "GatewayError", "message": "x"}
    result = reported(fetch_op(), GatewayOutcome(error=error))
    _, history = run_through(
        schedule(),
        c.HandleCallResult(call=call(attempt=0), result=result),
        c.HandleCallResult(call=call(attempt=2), result=result),
    )
    assert [e.op for e in history if isinstance(e, h.StepErrored | h.StepFailed)] == [
        "Gateway",
        "Gateway",
    ]
    [span] = fold_trace(history).root.children[:1]
    assert (span.name, span.step_op, span.status) == ("get", StepOp.AI_GATEWAY, SpanStatus.FAILED)


def test_rows_written_before_errors_named_their_op_still_decode() -> None:
    payload = {"at": 1, "step_id": "s", "name": "s", "attempt": 0, "error": {}, "started_at": 0}
    assert decode("StepFailed", 1, payload) == h.StepFailed(**payload, op="")
    old = {**payload, "retry_at": 5}
    assert decode("StepErrored", 1, old) == h.StepErrored(**old, op="")
