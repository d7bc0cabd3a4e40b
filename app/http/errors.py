"""The one place exceptions become the protocol's error envelope.

Envelope (Inngest ``publicerr``): HTTP status + ``{"error": msg, "status": n, "data": any|null}``
(plus ``"code"`` where one applies).  Every 4xx/5xx Stepwell answers goes through here.

A route may add to the envelopes of its failures through its ``opt`` (Litestar's per-handler
metadata): ``ERROR_FIELDS`` are extra body fields (``POST /e`` answers every failure with
``"ids": []``) and ``RETRY_NOTE`` tells the client what retrying means when the outcome of its
request is unknown.

Transient database failures are 503 with ``Retry-After``, never 500: a pool with no free
connection (``PoolTimeout``), a pool closing at shutdown (``PoolClosed``), a statement cancelled
by the read timeout (``QueryCanceled``), a deadlock or serialization failure
(``TransactionRollback``) and a lost connection (any other ``psycopg.OperationalError``: the
server restarting, ``AdminShutdown``, a COMMIT that got no answer).  Only a lost connection
leaves the outcome of a write unknown.  Each pool discards broken connections, so the retry
gets a fresh one.  They are logged as one warning line each, without a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

from domain.errors import InvalidEvent, InvalidFunctionConfig, RunNotFound, StepwellError

log = logging.getLogger(__name__)

#: ``opt`` key of a route: extra body fields of every error envelope it answers.
ERROR_FIELDS = "error_fields"
#: ``opt`` key of a route: what a retry does when a lost connection left the outcome unknown.
RETRY_NOTE = "retry_note"


class ApiError(StepwellError):
    """An error meant for the client, with its status and optional data/code."""

    def __init__(
        self, status: int, message: str, *, data: Any = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEnvelope:
    """The error body of every 4xx/5xx (OpenAPI documentation of ``envelope``)."""

    error: str
    status: int
    data: Any = None
    code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    """How one kind of transient database failure is answered (always 503)."""

    code: str
    message: str
    #: ``Retry-After`` seconds: short after a lost connection (the pool replaces it at once and
    #: a restarting server is back within seconds), longer when the database is overloaded,
    #: so that retries do not keep it so.
    retry_after: int
    #: Whether the request may have taken effect (only a lost connection leaves that unknown).
    outcome_unknown: bool = False


BUSY = Unavailable(
    code="database_busy",
    message="the server is busy: no database connection became free in time; nothing was done",
    retry_after=5,
)
SHUTTING_DOWN = Unavailable(
    code="shutting_down",
    message="the server is shutting down; nothing was done",
    retry_after=5,
)
TIMED_OUT = Unavailable(
    code="database_timeout",
    message="the database cancelled the statement (over the server's read timeout); "
    "nothing was done",
    retry_after=5,
)
CONFLICT = Unavailable(
    code="database_conflict",
    message="the database rolled the transaction back (a deadlock or serialization conflict "
    "with another request); nothing was done",
    retry_after=2,
)
CONNECTION_LOST = Unavailable(
    code="database_unavailable",
    message="the database connection failed; the request may or may not have taken effect",
    retry_after=2,
    outcome_unknown=True,
)

_DESCRIPTIONS = {
    413: "Request Entity Too Large: the body is over the route's limit",
    503: "Service Unavailable: the database is unreachable or busy; retry after the number of "
    "seconds in the `Retry-After` header",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` for a route's error statuses, all in the envelope.

    Without it Litestar documents its own validation-error shape for 400, which no route
    answers; every route documents the statuses it may really return.
    """
    return {
        status: ResponseSpec(
            data_container=ErrorEnvelope,
            description=_DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            generate_examples=False,
        )
        for status in statuses
    }


def envelope(
    status: int,
    message: str,
    data: Any = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"error": message, "status": status, "data": data, **extra}
    if code:
        body["code"] = code
    return Response(body, status_code=status, headers=headers)


def unavailable(exc: psycopg.OperationalError) -> Unavailable:
    """Which transient failure ``exc`` is."""
    if isinstance(exc, PoolTimeout | TooManyRequests):
        return BUSY
    if isinstance(exc, PoolClosed):
        return SHUTTING_DOWN
    if isinstance(exc, psycopg.errors.QueryCanceled):
        # 503 rather than a 4xx: every REST read is bounded (limits, indexed lookups), so a
        # client cannot make one expensive enough to time out by itself; a timeout means the
        # database is overloaded or a lock is held, which passes.
        return TIMED_OUT
    if isinstance(exc, psycopg.errors.TransactionRollback):
        return CONFLICT
    return CONNECTION_LOST


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    response = _response_for(request, exc)
    fields = _route_opt(request).get(ERROR_FIELDS)
    if fields and isinstance(response.content, dict):
        response.content = {**response.content, **fields}
    return response


def _response_for(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, ApiError):
        return envelope(exc.status, exc.message, exc.data, exc.code)
    if isinstance(exc, InvalidFunctionConfig | InvalidEvent):
        return envelope(400, str(exc))
    if isinstance(exc, RunNotFound):
        return envelope(404, str(exc))
    if isinstance(exc, NotFoundException):
        return envelope(404, "not found")
    if isinstance(exc, ValidationException):
        return envelope(400, exc.detail or "invalid request", exc.extra or None)
    if isinstance(exc, RequestEntityTooLarge):
        return envelope(413, _too_large(request))
    if isinstance(exc, HTTPException):
        return envelope(exc.status_code, exc.detail)
    if isinstance(exc, UnicodeDecodeError | RecursionError):
        # Raised by the JSON decoders for bodies that are not UTF-8 or are nested too deeply.
        return envelope(400, f"request body is not valid JSON: {type(exc).__name__}")
    if isinstance(exc, psycopg.DataError):
        # A value PostgreSQL cannot hold (a NUL byte in text, a number out of range): the
        # statement failed and its transaction rolled back, so nothing changed.
        return envelope(400, f"invalid value: {_first_line(exc)}")
    if isinstance(exc, psycopg.OperationalError):
        return _unavailable_response(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return envelope(500, "internal server error")


def _unavailable_response(
    request: Request[Any, Any, Any], exc: psycopg.OperationalError
) -> Response[Any]:
    kind = unavailable(exc)
    # Expected under load or while the database restarts: one line each, no traceback.
    log.warning(
        "%s %s answered 503 (%s): %s: %s",
        request.method,
        request.url.path,
        kind.code,
        type(exc).__name__,
        _first_line(exc),
    )
    message = f"{kind.message}; retry in {kind.retry_after} s"
    note = _route_opt(request).get(RETRY_NOTE)
    if kind.outcome_unknown and note:
        message = f"{message}. {note}"
    headers = {"Retry-After": str(kind.retry_after)}
    return envelope(503, message, code=kind.code, headers=headers)


def _too_large(request: Request[Any, Any, Any]) -> str:
    handler = request.scope.get("route_handler")
    if not isinstance(handler, HTTPRouteHandler):
        return "request body is too large"
    return f"request body is over the max size of {handler.resolve_request_max_body_size()} bytes"


def _route_opt(request: Request[Any, Any, Any]) -> dict[str, Any]:
    # No handler when no route matched (404, 405 raised by the router).
    handler = request.scope.get("route_handler")
    return handler.opt if isinstance(handler, HTTPRouteHandler) else {}


def _first_line(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]
