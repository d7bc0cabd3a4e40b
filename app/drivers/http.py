"""Calling an SDK over HTTP: build the request of protocol §2.1, classify the reply (§2.2).

``build_request`` turns a run state and the queue item being executed into URL, body and
headers (signed with the JCS-canonical body in self-hosted mode, which the Python SDK verifies
over).  ``call`` sends it through the one shared ``aiohttp.ClientSession`` (see ``new_session``)
and returns a ``CallResult``: the function returned, reported ops, or failed (retryable or
not).  Given the signing keys (self-hosted mode), a reply is believed only if its signature
verifies, or if it comes from an SDK release that does not sign (see ``signing``); otherwise the
attempt fails with ``InngestErrResponseSignature`` and nothing in the reply is used.  Transport
errors, non-SDK replies and malformed bodies are failures, never exceptions.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import msgspec
from yarl import URL

from app.drivers.http10 import use_lenient_protocol
from app.drivers.signing import canonical_json, response_distrust, sign
from domain import backoff
from domain.opcodes import (
    CallFailed,
    CallResult,
    FunctionReturned,
    InvalidOp,
    OpsReported,
    parse_ops,
)
from domain.run import RunState
from domain.sdk_errors import failure_reason, plain_error, sdk_error

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # beyond this the SDK fetches state itself (use_api)
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
RESPONSE_SIGNATURE_ERROR = "InngestErrResponseSignature"


@dataclass(frozen=True, slots=True, kw_only=True)
class SdkRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    use_api: bool


@functools.lru_cache(maxsize=4096)
def step_url(base: str, step_id: str) -> str:
    """The function URL with ``stepId`` replaced; ``fnId`` and any other parameter kept.

    Cached: parsing and re-encoding the query on every call showed in the step profile."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "stepId"]
    query.append(("stepId", step_id))
    return urlunsplit(parts._replace(query=urlencode(query)))


def request_body(
    state: RunState, *, step_id: str, attempt: int, job_id: str, item_id: int, use_api: bool
) -> dict[str, Any]:
    steps = {} if use_api else {sid: state.steps[sid] for sid in state.stack}
    events = [_sdk_event(e) for e in state.events]
    return {
        "event": events[0] if events else {},
        "events": [] if use_api else events,
        "steps": steps,
        # Defers already recorded, so the SDK does not report them again; only one that is
        # still due can be aborted.
        "defers": {
            hashed_id: {"abortable": entry["status"] == "AfterRun"}
            for hashed_id, entry in state.defers.items()
        },
        "ctx": {
            # fn_id is left out on purpose: its presence turns on the TS SDK's async
            # checkpointing, which this server does not implement (protocol §2.3).
            "run_id": state.run_id,
            "env": "",
            "step_id": step_id,
            "attempt": attempt,
            "max_attempts": state.max_attempts,
            "stack": {"stack": list(state.stack), "current": len(state.stack)},
            "qi_id": str(item_id),
            "request_id": "",
            "generation_id": attempt + 1,
            "job_id": job_id,
            "disable_immediate_execution": state.force_step_plan,
            "use_api": use_api,
        },
        "version": state.request_version if state.request_version in (1, 2) else -1,
        "use_api": use_api,
    }


def _sdk_event(event: Any) -> Any:
    if isinstance(event, Mapping) and "user" not in event:
        return {**event, "user": {}}
    return event


def build_request(
    state: RunState,
    *,
    base_url: str,
    step_id: str,
    attempt: int,
    job_id: str,
    item_id: int,
    server_kind: str,
    signing_key: str | None,
) -> SdkRequest:
    def encoded(use_api: bool) -> bytes:
        payload = request_body(
            state, step_id=step_id, attempt=attempt, job_id=job_id, item_id=item_id, use_api=use_api
        )
        return _encode(payload, signed=signing_key is not None)

    body = encoded(False)
    use_api = len(body) > MAX_REQUEST_BYTES
    if use_api:
        body = encoded(True)
    headers = {
        "Content-Type": "application/json",
        "X-Inngest-Req-Version": str(state.request_version),
        "X-Inngest-Step-ID": step_id,
        "X-Run-ID": state.run_id,
        "X-Inngest-Server-Kind": server_kind,
        "x-inngest-job-id": job_id,
    }
    if signing_key:
        headers["X-Inngest-Signature"] = sign(body, signing_key, int(time.time()))
    return SdkRequest(url=step_url(base_url, step_id), body=body, headers=headers, use_api=use_api)


def _encode(payload: Any, *, signed: bool) -> bytes:
    if signed:
        return canonical_json(payload)
    return msgspec.json.encode(payload)


# Below the usual SDK servers' idle keep-alive (uvicorn and Node both close after 5 s): reusing a
# connection the server is closing would fail the call and cost the step an attempt.
KEEPALIVE_SECONDS = 4.0


def new_session(*, call_timeout: float, max_connections: int) -> aiohttp.ClientSession:
    """The outbound client for SDK calls.

    aiohttp rather than httpx on this path: measured against the benchmark's SDK stand-in with
    32 calls in flight, httpx spent ~1.5 ms of CPU per request (most of it in its connection
    pool's bookkeeping) and aiohttp ~0.07 ms — the difference between a CPU-bound and an
    I/O-bound server.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
    )
    use_lenient_protocol(connector)  # an HTTP/1.0 hop's Transfer-Encoding, as Go reads it
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=call_timeout)
    # No cookie jar: each SDK call stands alone (as upstream's), nothing carried between them.
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        raise_for_status=False,
    )


async def call(
    client: aiohttp.ClientSession,
    request: SdkRequest,
    now_ms: int,
    *,
    signing_keys: Sequence[str] = (),
) -> CallResult:
    """Send one call; ``signing_keys`` (self-hosted mode) must sign the reply, empty skips it."""
    sent = time.monotonic()
    try:
        # encoded=True: send the URL exactly as built (no re-quoting of the query).
        async with client.post(
            URL(request.url, encoded=True),
            data=request.body,
            headers=request.headers,
            allow_redirects=False,
        ) as response:
            content = await _read_capped(response.content, MAX_RESPONSE_BYTES)
            status, headers = response.status, response.headers
    except TimeoutError:  # aiohttp's socket timeouts are TimeoutErrors too
        waited = client.timeout.sock_read
        return CallFailed(
            error=plain_error(
                "Error", f"request to SDK failed: ReadTimeout (no data from the SDK for {waited}s)"
            )
        )
    except (aiohttp.ClientError, ValueError) as exc:
        return CallFailed(error=plain_error("Error", f"request to SDK failed: {exc!r}"))
    # The SDK signs as it answers, which may be long after ``now_ms`` (a call runs up to the call
    # timeout): judge the signature's age, and Retry-After, from when the reply arrived.
    received_ms = now_ms + round((time.monotonic() - sent) * 1000)
    return classify(status, headers, content, received_ms, signing_keys=signing_keys)


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to EOF, or its first ``limit + 1`` bytes; raises if the body is cut short."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await stream.read(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def classify(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    now_ms: int,
    *,
    signing_keys: Sequence[str] = (),
) -> CallResult:
    """Map one SDK reply to a ``CallResult``; with ``signing_keys``, only a reply that verifies."""
    return _classify(status, headers, content, now_ms, signing_keys, streamed=False)


def _classify(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    now_ms: int,
    signing_keys: Sequence[str],
    *,
    streamed: bool,
) -> CallResult:
    version = _int(headers.get("x-inngest-req-version"))
    no_retry = headers.get("x-inngest-no-retry", "").lower() == "true"
    retry_after = _retry_after(headers, now_ms)
    if len(content) > MAX_RESPONSE_BYTES:
        return CallFailed(
            error=plain_error(
                "InngestErrResponseTooLarge", "the SDK response is larger than 8 MiB"
            ),
            retryable=False,
            status=status,
            request_version=version,
        )
    if status == 201:
        # Sent before its body exists, a 201's own headers cannot sign it: the wrapped reply can.
        return _unwrap_stream(content, headers, now_ms, signing_keys)
    if signing_keys:
        distrust = response_distrust(
            headers.get("x-inngest-signature"),
            content,
            headers.get("x-inngest-sdk"),
            signing_keys,
            now_ms // 1000,
            streamed=streamed,
        )
        if distrust is not None:
            # Retryable, so a key rotation in progress recovers; nothing of the reply is used,
            # not even its version, No-Retry or Retry-After headers.
            return CallFailed(error=plain_error(RESPONSE_SIGNATURE_ERROR, distrust), status=status)
    from_sdk = "x-inngest-sdk" in headers
    if 200 <= status < 300 and not from_sdk:
        return CallFailed(
            error=plain_error(
                "Error",
                f"the URL answered {status} but is not an Inngest SDK (no X-Inngest-SDK header)",
            ),
            status=status,
            request_version=version,
        )
    body = _json(content)
    if status == 206:
        try:
            ops = parse_ops(body.value if body.ok else None)
        except InvalidOp as exc:
            return CallFailed(
                error=plain_error("Error", f"invalid ops from SDK: {exc}"),
                status=status,
                request_version=version,
            )
        if not body.ok:
            return CallFailed(
                error=plain_error("Error", "SDK replied 206 with a body that is not JSON"),
                status=status,
            )
        return OpsReported(
            ops=ops, request_version=version, no_retry=no_retry, retry_after_ms=retry_after
        )
    if 200 <= status < 300:
        return FunctionReturned(
            output=body.value if body.ok else content.decode(errors="replace"),
            request_version=version,
        )
    return CallFailed(
        error=sdk_error(
            body.value if body.ok else content.decode(errors="replace"), status, from_sdk=from_sdk
        ),
        reason=failure_reason(status, no_retry),
        retryable=not no_retry,
        retry_after_ms=retry_after,
        status=status,
        request_version=version,
    )


def _unwrap_stream(
    content: bytes, outer: Mapping[str, str], now_ms: int, signing_keys: Sequence[str]
) -> CallResult:
    body = _json(content.strip())
    wrapped = body.value if body.ok else None
    if not isinstance(wrapped, Mapping) or "status" not in wrapped:
        return CallFailed(error=plain_error("Error", "malformed streaming response from SDK"))
    inner = wrapped.get("body")
    raw = inner.encode() if isinstance(inner, str) else json.dumps(inner).encode()
    headers = {str(k).lower(): str(v) for k, v in (wrapped.get("headers") or {}).items()}
    # A wrapped reply that does not name its SDK is the streaming SDK's (the 201 names it).
    headers.setdefault("x-inngest-sdk", outer.get("x-inngest-sdk") or "streamed")
    return _classify(int(wrapped["status"]), headers, raw, now_ms, signing_keys, streamed=True)


@dataclass(frozen=True, slots=True)
class _Parsed:
    ok: bool
    value: Any = None


def _json(content: bytes) -> _Parsed:
    if not content.strip():
        return _Parsed(True, None)
    try:
        return _Parsed(True, msgspec.json.decode(content))
    except msgspec.DecodeError:
        return _Parsed(False)


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else -1
    except ValueError:
        return -1


def _retry_after(headers: Mapping[str, str], now_ms: int) -> int | None:
    value = headers.get("retry-after")
    return backoff.parse_retry_after(value, now_ms) if value else None
