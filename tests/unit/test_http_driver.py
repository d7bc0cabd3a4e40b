"""The HTTP driver: request building (protocol §2.1) and reply classification (§2.2)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest

from app.drivers import http as driver
from app.drivers.signing import strip_key_prefix
from domain import history as h
from domain.opcodes import CallFailed, CallResult, FunctionReturned, Opcode, OpsReported
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
    assert result.error == {"name": "ValueError", "message": "bad", "stack": "tb", "code": "x"}
    assert result.reason == ("invalid status code: 500" if retryable else "NonRetriableError")


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


# --- reply signatures (self-hosted mode) ---

KEY = "signkey-test-12345678"
FALLBACK = "signkey-test-abcdef01"
NOW_S = T0 // 1000
PY = "inngest-py:v0.5.19"


def signed(body: bytes, key: str = KEY, *, t: int = NOW_S, sdk: str = PY) -> dict[str, str]:
    """Reply headers signed the way the Python SDK signs (its own ``net.sign_response``)."""
    from inngest._internal import net

    signature = net.sign_response(body, key, t)
    assert isinstance(signature, str)
    return {"x-inngest-sdk": sdk, "x-inngest-signature": signature}


def js_signature(body: str, key: str, t: int) -> str:
    """inngest-js getResponseSignature: HMAC-SHA256(key text, body string + t)."""
    mac = hmac.new(strip_key_prefix(key).encode(), (body + str(t)).encode(), hashlib.sha256)
    return f"t={t}&s={mac.hexdigest()}"


def assert_distrusted(result: object, status: int = 200) -> None:
    assert isinstance(result, CallFailed), result
    assert result.error["name"] == driver.RESPONSE_SIGNATURE_ERROR
    assert result.retryable and result.retry_after_ms is None
    # Nothing of the reply is used: no output, no version, no Retry-After.
    assert result.request_version == -1 and result.status == status


def test_a_reply_signed_with_the_signing_key_is_believed() -> None:
    body = b'{"ok": 1}'
    result = driver.classify(200, signed(body), body, T0, signing_keys=[KEY])
    assert result == FunctionReturned(output={"ok": 1}, request_version=-1)


def test_a_reply_signed_with_the_fallback_key_is_believed() -> None:
    body = b'[{"id":"a","op":"StepRun","data":1}]'
    result = driver.classify(206, signed(body, FALLBACK), body, T0, signing_keys=[KEY, FALLBACK])
    assert isinstance(result, OpsReported) and result.ops[0].id == "a"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(signed(b'{"ok": 2}'), id="signs another body"),
        pytest.param(signed(b'{"ok": 1}', FALLBACK), id="another key"),
        pytest.param(signed(b'{"ok": 1}', t=NOW_S - 301), id="older than five minutes"),
        pytest.param(signed(b'{"ok": 1}', t=NOW_S + 301), id="five minutes in the future"),
        pytest.param({"x-inngest-sdk": PY, "x-inngest-signature": "s=abc"}, id="malformed"),
        pytest.param({"x-inngest-sdk": PY, "x-inngest-signature": ""}, id="empty"),
    ],
)
def test_a_reply_whose_signature_does_not_verify_fails_the_attempt(
    headers: dict[str, str],
) -> None:
    result = driver.classify(200, headers, b'{"ok": 1}', T0, signing_keys=[KEY])
    assert_distrusted(result)
    assert isinstance(result, CallFailed)
    assert "signature does not verify with the signing key" in result.error["message"]


def test_a_distrusted_error_reply_is_retried_whatever_it_says() -> None:
    body = b'{"name":"NonRetriableError","message":"stop"}'
    headers = {**signed(body, FALLBACK), "x-inngest-no-retry": "true", "retry-after": "60"}
    assert_distrusted(driver.classify(500, headers, body, T0, signing_keys=[KEY]), status=500)


@pytest.mark.parametrize(
    "sdk", [PY, "inngest-py:v0.4.9", "inngest-js:v4.24.0", "inngest-js:v3.22.4"]
)
def test_an_unsigned_reply_from_an_sdk_release_that_signs_fails_the_attempt(sdk: str) -> None:
    result = driver.classify(200, {"x-inngest-sdk": sdk}, b"{}", T0, signing_keys=[KEY])
    assert_distrusted(result)
    assert isinstance(result, CallFailed)
    assert f"not signed, but {sdk} signs its responses" in result.error["message"]


@pytest.mark.parametrize("sdk", ["inngest-py:v0.4.8", "inngest-js:v3.22.3", "inngest-go:v0.11.0"])
def test_an_unsigned_reply_from_an_sdk_release_that_never_signs_is_believed(sdk: str) -> None:
    result = driver.classify(200, {"x-inngest-sdk": sdk}, b'"done"', T0, signing_keys=[KEY])
    assert result == FunctionReturned(output="done", request_version=-1)


def test_an_unidentified_error_reply_stays_an_ordinary_failure() -> None:
    # What both SDKs answer a request whose signature they reject: no X-Inngest-* headers.
    result = driver.classify(401, {}, b'{"message":"Unauthorized"}', T0, signing_keys=[KEY])
    assert isinstance(result, CallFailed) and result.retryable
    assert result.error == {"name": "Error", "message": "Unauthorized"}


def test_without_signing_keys_no_signature_is_checked() -> None:
    result = driver.classify(200, signed(b"[]", FALLBACK), b'{"ok": 1}', T0)
    assert isinstance(result, FunctionReturned)


def js_stream(inner_body: str, signature: str | None, status: int = 206) -> bytes:
    headers = {"Content-Type": "application/json", "X-Inngest-SDK": "inngest-js:v3.30.0"}
    if signature is not None:
        headers["X-Inngest-Signature"] = signature
    wrapped = {"status": status, "headers": headers, "body": inner_body, "version": 1}
    return b"   " + json.dumps(wrapped).encode()


JS_OUTER = {"x-inngest-sdk": "inngest-js:v3.30.0"}
JS_OPS = json.dumps([{"id": "a", "op": "StepRun", "data": "é"}], ensure_ascii=False)


def test_a_streamed_reply_is_believed_when_its_wrapped_signature_verifies() -> None:
    # inngest-js 3.x signs with a millisecond timestamp; the wrapped headers carry it.
    stream = js_stream(JS_OPS, js_signature(JS_OPS, KEY, T0 - 60_000))
    result = driver.classify(201, JS_OUTER, stream, T0, signing_keys=[KEY])
    assert isinstance(result, OpsReported) and result.ops[0].data == "é"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(js_signature(JS_OPS, FALLBACK, T0), id="another key"),
        pytest.param(js_signature(JS_OPS, KEY, T0 - 301_000), id="stale milliseconds"),
        pytest.param(None, id="unsigned from a release that signs streams"),
    ],
)
def test_a_streamed_reply_that_does_not_verify_fails_the_attempt(signature: str | None) -> None:
    stream = js_stream(JS_OPS, signature)
    assert_distrusted(driver.classify(201, JS_OUTER, stream, T0, signing_keys=[KEY]), status=206)


def test_a_streamed_reply_is_judged_by_its_wrapped_body_not_the_stream() -> None:
    stream = js_stream(JS_OPS, None)
    headers = {**JS_OUTER, "x-inngest-signature": js_signature(stream.decode(), KEY, NOW_S)}
    assert_distrusted(driver.classify(201, headers, stream, T0, signing_keys=[KEY]), status=206)


# The SDK's CommRequest model still uses a pydantic v1-style Config class.
SDK_IMPORT_WARNING = pytest.mark.filterwarnings("ignore:Support for class-based:DeprecationWarning")


async def python_sdk_reply(*, streaming: bool, key: str) -> CallResult:
    """Our signed request through the installed Python SDK's handler, its reply classified."""
    import inngest
    from inngest._internal import comm_lib, const, server_lib

    client = inngest.Inngest(app_id="unit", is_production=True, signing_key=key)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e/x"))
    async def f(ctx: inngest.Context) -> dict[str, str]:
        return {"ok": "é"}

    handler = comm_lib.CommHandler(
        client=client,
        framework=server_lib.Framework.FAST_API,
        functions=[f],
        streaming=const.Streaming.FORCE if streaming else const.Streaming.DISABLE,
        enable_unauthed_sync=False,
    )
    url = "http://h/api?fnId=unit-f&stepId=step"
    req = driver.build_request(
        state(),
        base_url=url,
        step_id="step",
        attempt=0,
        job_id="j",
        item_id=1,
        server_kind="cloud",
        signing_key=KEY,
    )
    reply = await handler.post(
        comm_lib.CommRequest(
            body=req.body,
            headers=req.headers,
            query_params={"fnId": "unit-f", "stepId": "step"},
            public_path=None,
            raw_request=None,
            request_url=url,
            serve_origin=None,
            serve_path=None,
        )
    )
    if reply.stream is not None:
        body = b"".join([chunk async for chunk in reply.stream()])
    else:
        dumped = reply.body_bytes()
        assert isinstance(dumped, bytes)
        body = dumped
    headers = {k.lower(): v for k, v in reply.headers.items()}
    return driver.classify(
        reply.status_code, headers, body, time.time_ns() // 1_000_000, signing_keys=[KEY]
    )


@SDK_IMPORT_WARNING
@pytest.mark.parametrize("streaming", [False, True])
async def test_the_python_sdks_own_replies_verify(streaming: bool) -> None:
    # Streamed, the SDK signs nothing of what it streams: accepted as from a release that
    # does not sign streams.
    result = await python_sdk_reply(streaming=streaming, key=KEY)
    assert result == FunctionReturned(output={"ok": "é"}, request_version=2)


@SDK_IMPORT_WARNING
async def test_a_python_sdk_rotating_keys_signs_with_the_key_that_verified_our_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The app moved to a new key and keeps ours as its fallback (the SDK reads it from env).
    monkeypatch.setenv("INNGEST_SIGNING_KEY_FALLBACK", KEY)
    result = await python_sdk_reply(streaming=False, key=FALLBACK)
    assert isinstance(result, FunctionReturned)
