"""The one place exceptions become the protocol's error envelope.

Envelope (Inngest ``publicerr``): HTTP status + ``{"error": msg, "status": n, "data": any|null}``
(plus ``"code"`` where one applies).  Every 4xx/5xx Stepwell answers goes through here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec

from domain.errors import InvalidEvent, InvalidFunctionConfig, RunNotFound, StepwellError

log = logging.getLogger(__name__)


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


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` for a route's error statuses, all in the envelope.

    Without it Litestar documents its own validation-error shape for 400, which no route
    answers; every route documents the statuses it may really return.
    """
    return {
        status: ResponseSpec(
            data_container=ErrorEnvelope,
            description=HTTPStatus(status).phrase,
            generate_examples=False,
        )
        for status in statuses
    }


def envelope(
    status: int, message: str, data: Any = None, code: str | None = None, **extra: Any
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"error": message, "status": status, "data": data, **extra}
    if code:
        body["code"] = code
    return Response(body, status_code=status)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
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
    if isinstance(exc, HTTPException):
        return envelope(exc.status_code, exc.detail)
    if isinstance(exc, UnicodeDecodeError | RecursionError):
        # Raised by the JSON decoders for bodies that are not UTF-8 or are nested too deeply.
        return envelope(400, f"request body is not valid JSON: {type(exc).__name__}")
    if isinstance(exc, psycopg.DataError):
        # A value PostgreSQL cannot hold (a NUL byte in text, a number out of range): the
        # statement failed and its transaction rolled back, so nothing changed.
        return envelope(400, f"invalid value: {(str(exc) or type(exc).__name__).splitlines()[0]}")
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return envelope(500, "internal server error")
