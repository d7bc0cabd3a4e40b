"""Requests the server makes for a run: `step.fetch` (Gateway) and `step.ai.infer` (AIGateway).

An SDK reports such an op instead of making the request itself; the executor calls
``perform_ops`` while it still holds the call's lease, and ``decide`` memoizes the outcome.  The
shapes are upstream's (inngest/inngest ``pkg/execution/executor/executor.go``,
``pkg/util/gateway``, ``pkg/util/aigateway``):

* ``Gateway`` — ``opts = {url, method, headers, body}``; any HTTP answer, 4xx/5xx included, is
  a success memoized as ``{"data": {"url", "headers", "body", "status_code"}}`` (header names in
  Go's canonical form, repeated values joined with ``,``); only a request that could not be
  made or read fails, as ``GatewayError``.
* ``AIGateway`` — ``opts = {url, headers, auth_key, format, body}``; a JSON POST with the key
  where the format wants it (``anthropic``: ``x-api-key``; ``gemini``: ``?key=``; ``bedrock``:
  ``Authorization`` as given; otherwise ``Authorization: Bearer``).  A 2xx JSON answer is
  memoized as ``{"data": <provider JSON>}``; anything else fails as ``AIGatewayError`` with the
  provider's body as ``stack`` (and as ``data`` when it is JSON).

Failures retry the call while attempts remain (``decide``).  The provider key is a secret: it is
never logged, and it is scrubbed from every error this module produces.  Deliberate departures
from upstream: a non-JSON ``step.fetch`` body is sent as given (upstream JSON-quotes it), a
method is accepted in any case, a header given in ``opts`` replaces the default of the same name
instead of being sent twice, a non-JSON 2xx AI answer fails the step (upstream loses it), and a
failed answer's body is kept in the error only up to ``MAX_ERROR_BODY`` characters.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from domain.opcodes import GATEWAYS, GatewayOutcome, Op, Opcode, OpsReported

#: Upstream's cap on a response it reads (``MaxSDKResponseBodySize``).
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: How much of a failed answer's body an error keeps (it is stored with every attempt).
MAX_ERROR_BODY = 64 * 1024
#: Upstream follows this many redirects (for hosts that redirect long-running jobs).
MAX_REDIRECTS = 60
#: Requests of one response made at once (an SDK may report many ops together).
MAX_CONCURRENT = 16
CONNECT_TIMEOUT = 10.0
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
)
UNREACHABLE = "Unable to reach SDK URL"  # upstream's text for a refused or unroutable connection
DEFAULT_AI_ERROR_BODY = '{"error":"Error making AI request"}'


class InvalidGatewayRequest(ValueError):
    """The op's options do not describe a request that can be made."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundRequest:
    method: str
    #: Shown in the ``Gateway`` memo; for AI requests it may carry the key (Gemini): never logged.
    url: str = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes | None = field(default=None, repr=False)
    #: Strings that must not appear in any error or log line (the provider key).
    secrets: tuple[str, ...] = field(default=(), repr=False)


#: Set while a gateway request is in flight (see ``_HideGatewayRequests``).
_IN_FLIGHT: contextvars.ContextVar[bool] = contextvars.ContextVar("gateway", default=False)
#: httpx logs each request's URL at INFO, httpcore its exchanges at DEBUG.
_CHATTY_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _HideGatewayRequests(logging.Filter):
    """Drops the HTTP libraries' records about gateway requests: a Gemini URL carries the
    provider key, and a user's ``step.fetch`` URL may carry tokens of theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _IN_FLIGHT.get()


def _hide_gateway_requests_from_logs() -> None:
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideGatewayRequests) for f in logger.filters):
            logger.addFilter(_HideGatewayRequests())


def new_client(
    *,
    read_timeout: float,
    max_connections: int = 64,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The outbound client for gateway requests, separate from the SDK-call session.

    Nothing is carried between requests: no cookie is ever stored (the jar refuses every
    domain), and no proxy, ``.netrc`` credentials or CA settings come from the environment.
    The HTTP libraries' own log lines about these requests are suppressed.
    """
    _hide_gateway_requests_from_logs()
    return httpx.AsyncClient(
        timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        trust_env=False,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=8),
        transport=transport,
    )


# --- building the request ------------------------------------------------------------------


def build_fetch(opts: Mapping[str, Any]) -> OutboundRequest:
    """A ``step.fetch`` request: the method (default POST, as upstream) and headers as given."""
    url = _url(opts.get("url"))
    method = opts.get("method") or "POST"
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InvalidGatewayRequest(f"invalid http method: {method}")
    body = opts.get("body")
    if body is not None and not isinstance(body, str):
        raise InvalidGatewayRequest("body must be a string")
    headers = _merge([("User-Agent", "Inngest")], _headers(opts.get("headers")))
    return OutboundRequest(
        method=method.upper(), url=url, headers=headers, body=body.encode() if body else None
    )


def build_ai(opts: Mapping[str, Any]) -> OutboundRequest:
    """A ``step.ai.infer`` request: a JSON POST of ``body`` with the key placed per ``format``."""
    url = _url(opts.get("url"))
    key = opts.get("auth_key") or ""
    fmt = opts.get("format") or "openai-chat"
    if not isinstance(key, str) or not isinstance(fmt, str):
        raise InvalidGatewayRequest("auth_key and format must be strings")
    defaults = [("Content-Type", "application/json"), ("User-Agent", "Inngest")]
    if key and fmt == "gemini":
        url = _with_query_key(url, key)
    elif key and fmt == "bedrock":
        defaults.append(("Authorization", key))
    elif key and fmt == "anthropic":
        defaults.append(("x-api-key", key))
    elif key:
        defaults.append(("Authorization", f"Bearer {key}"))
    body = opts.get("body")
    encoded = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    return OutboundRequest(
        method="POST",
        url=url,
        headers=_merge(defaults, _headers(opts.get("headers"))),
        body=encoded,
        secrets=(key,) if key else (),
    )


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidGatewayRequest("a url is required")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidGatewayRequest("the url must be an absolute http or https URL")
    return value


def _headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidGatewayRequest("headers must be an object of strings")
    return list(value.items())


def _merge(
    defaults: list[tuple[str, str]], given: list[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    named = {k.lower() for k, _ in given}
    merged = [(k, v) for k, v in defaults if k.lower() not in named] + given
    return tuple((canonical_header(k), v) for k, v in merged)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def canonical_header(name: str) -> str:
    """``x-api-key`` as Go's ``net/http`` sends it, ``X-Api-Key``: upstream's requests carry
    their header names in this form, and a server that compares names by case sees that."""
    if not _TOKEN.fullmatch(name):
        return name  # as Go: a name that is not a token is left alone
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _with_query_key(url: str, key: str) -> str:
    # As upstream: the query is re-encoded with its names sorted and ``key`` added (once).
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if ("key", key) not in query:
        query.append(("key", key))
    return urlunsplit(parts._replace(query=urlencode(sorted(query, key=lambda kv: kv[0]))))


# --- shaping what came back ----------------------------------------------------------------


def fetch_outcome(
    request: OutboundRequest, status: int, headers: Iterable[tuple[str, str]], body: bytes
) -> GatewayOutcome:
    joined: dict[str, str] = {}
    for name, value in headers:
        key = canonical_header(name)
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    data: dict[str, Any] = {"url": request.url}
    if joined:
        data["headers"] = joined
    data["body"] = body.decode("utf-8", errors="replace")
    data["status_code"] = status
    return GatewayOutcome(data=data)


def fetch_error(message: str) -> GatewayOutcome:
    return GatewayOutcome(
        error={"name": "GatewayError", "message": f"Error making gateway request: {message}"}
    )


def ai_outcome(request: OutboundRequest, status: int, body: bytes) -> GatewayOutcome:
    if status > 299:
        return ai_error(request, f"unsuccessful status code: {status}", body)
    try:
        data = json.loads(body)
    except ValueError:
        return ai_error(request, "the response body is not JSON", body)
    return GatewayOutcome(data=data)


def ai_error(request: OutboundRequest, message: str, body: bytes = b"") -> GatewayOutcome:
    text = _scrub(body.decode("utf-8", errors="replace"), request.secrets) or DEFAULT_AI_ERROR_BODY
    if len(text) > MAX_ERROR_BODY:
        text = text[:MAX_ERROR_BODY]
    error: dict[str, Any] = {
        "name": "AIGatewayError",
        "message": f"Error making AI request: {_scrub(message, request.secrets)}",
        "stack": text,
    }
    # Upstream's ``data`` is the body as JSON: a body that is not JSON has none.
    with contextlib.suppress(ValueError):
        error["data"] = json.loads(text)
    return GatewayOutcome(error=error)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


# --- making it ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


async def send(client: httpx.AsyncClient, request: OutboundRequest) -> _Answer | str:
    """The answer, or why there is none (a message free of secrets and of the URL)."""
    token = _IN_FLIGHT.set(True)
    try:
        return await _send(client, request)
    except httpx.ConnectError:
        return UNREACHABLE
    except httpx.TimeoutException as exc:
        return f"error performing request: timed out ({type(exc).__name__})"
    except httpx.TooManyRedirects:
        return f"error performing request: stopped after {MAX_REDIRECTS} redirects"
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        detail = _scrub(str(exc), request.secrets) or type(exc).__name__
        return f"error performing request: {detail}"
    finally:
        _IN_FLIGHT.reset(token)


async def _send(client: httpx.AsyncClient, request: OutboundRequest) -> _Answer | str:
    async with client.stream(
        request.method, request.url, headers=list(request.headers), content=request.body
    ) as response:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decoded: the cap bounds a zip bomb too
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                return "http response size is greater than the limit"
            chunks.append(chunk)
        return _Answer(response.status_code, _plain_headers(response), b"".join(chunks))


def _plain_headers(response: httpx.Response) -> list[tuple[str, str]]:
    # The body is handed on decoded, so its encoding and length headers no longer describe it
    # (Go's transport drops both when it decodes).
    decoded = "content-encoding" in response.headers
    return [
        (name, value)
        for name, value in response.headers.multi_items()
        if not (decoded and name.lower() in ("content-encoding", "content-length"))
    ]


async def perform(client: httpx.AsyncClient, op: Op) -> GatewayOutcome:
    """Make the request ``op`` describes; every failure is an outcome, never an exception."""
    ai = op.op is Opcode.AI_GATEWAY
    try:
        request = build_ai(op.opts) if ai else build_fetch(op.opts)
    except InvalidGatewayRequest as exc:
        blank = OutboundRequest(method="POST", url="", headers=())
        return ai_error(blank, str(exc)) if ai else fetch_error(str(exc))
    answer = await send(client, request)
    if isinstance(answer, str):
        return ai_error(request, answer) if ai else fetch_error(answer)
    if ai:
        return ai_outcome(request, answer.status, answer.body)
    return fetch_outcome(request, answer.status, answer.headers, answer.body)


async def perform_ops(
    client: httpx.AsyncClient, result: OpsReported, memoized: Container[str]
) -> OpsReported:
    """``result`` with the outcome of each gateway op that has no memo yet (concurrently)."""
    todo = {op.id: op for op in result.ops if op.op in GATEWAYS and op.id not in memoized}
    if not todo:
        return result
    gate = asyncio.Semaphore(MAX_CONCURRENT)

    async def one(op: Op) -> GatewayOutcome:
        async with gate:
            return await perform(client, op)

    outcomes = await asyncio.gather(*(one(op) for op in todo.values()))
    return replace(result, performed={**result.performed, **dict(zip(todo, outcomes, strict=True))})
