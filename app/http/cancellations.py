"""REST v1 bulk cancellations: ``POST /v1/cancellations``, ``GET /v1/cancellations`` and
``DELETE /v1/cancellations/{cancellation_id}`` (logic in ``app.engine.cancellations``).

Shapes follow upstream's ``cqrs.Cancellation``: ``function_id`` is the function's slug and
``function_internal_id`` its UUID; ``kind`` is always ``bulk_run`` and ``cause`` ``API``.
Validation messages are upstream's, one per line when several apply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post
from litestar.params import JSONBody, Parameter
from ulid import ULID

from app.engine import cancellations as engine
from app.http.auth import require_signing_key
from app.http.context import services_of
from app.http.errors import ApiError, error_responses
from app.http.runs import envelope, iso
from app.store.cancellations import Cancellation
from domain.ids import ACCOUNT_ID, ENV_ID

#: A cancellation is a few ids, two times and an expression: 1 MiB is ample (larger is 413).
MAX_BODY_BYTES = 1024 * 1024


class CancellationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /v1/cancellations``.

    A msgspec struct rather than a dataclass because the JSON key ``if`` is a Python keyword.
    Every field may be absent so that missing ones get upstream's messages, not a schema error.
    """

    app_id: Annotated[
        str, msgspec.Meta(description="Required: the app's id as its SDK names it, or its UUID")
    ] = ""
    function_id: Annotated[
        str,
        msgspec.Meta(
            description="Required: the function's slug (<app>-<fn>), its UUID or its SDK id"
        ),
    ] = ""
    started_before: Annotated[
        datetime | None,
        msgspec.Meta(description="Required: cancel runs queued at or before this RFC 3339 time"),
    ] = None
    started_after: Annotated[
        datetime | None,
        msgspec.Meta(description="Cancel only runs queued at or after this RFC 3339 time"),
    ] = None
    if_: Annotated[
        str | None,
        msgspec.Meta(description="CEL expression over the trigger `event`; only matches cancel"),
    ] = msgspec.field(default=None, name="if")


def cancellation_json(c: Cancellation) -> dict[str, Any]:
    """REST v1 ``Cancellation``."""
    return {
        "id": c.id,
        "created_at": iso(c.created_at),
        "name": c.name,
        "account_id": ACCOUNT_ID,
        "environment_id": ENV_ID,
        "app_id": c.app_id,
        "function_internal_id": c.function_id,
        "function_id": c.function_slug,
        "started_after": iso(c.started_after),
        "started_before": iso(c.started_before),
        "if": c.expression,
        "kind": "bulk_run",
        "cause": "API",
        "queue_name": None,
    }


@post(
    "/v1/cancellations",
    status_code=200,
    guards=[require_signing_key],
    request_max_body_size=MAX_BODY_BYTES,
    responses=error_responses(400, 401, 404, 413, 503),
    summary="Create a cancellation",
    operation_id="CreateCancellation",
    tags=["Cancellations"],
)
async def create_cancellation(
    request: Request[Any, Any, Any], data: JSONBody[CancellationRequest]
) -> dict[str, Any]:
    """Cancel every run of a function queued in a time range (and matching ``if``).

    Runs that have not ended are cancelled before this answers; a run scheduled in the range
    later on is cancelled before its next step.
    """
    req = engine.NewCancellation(
        app_id=data.app_id,
        function_id=data.function_id,
        started_before=data.started_before,
        started_after=data.started_after,
        expression=data.if_,
    )
    try:
        rule, _ = await engine.create_cancellation(services_of(request), req)
    except engine.InvalidCancellation as exc:
        raise ApiError(400, str(exc)) from exc
    except engine.FunctionNotFound as exc:
        raise ApiError(404, "function not found") from exc
    return envelope(cancellation_json(rule))


@get(
    "/v1/cancellations",
    guards=[require_signing_key],
    responses=error_responses(401, 503),
    summary="List cancellations",
    operation_id="ListCancellations",
    tags=["Cancellations"],
)
async def list_cancellations(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Every bulk cancellation rule, oldest first."""
    rules = await engine.list_cancellations(services_of(request))
    return envelope([cancellation_json(r) for r in rules])


@delete(
    "/v1/cancellations/{cancellation_id:str}",
    status_code=200,
    guards=[require_signing_key],
    responses=error_responses(400, 401, 404, 503),
    summary="Delete a cancellation",
    operation_id="DeleteCancellation",
    tags=["Cancellations"],
)
async def delete_cancellation(
    request: Request[Any, Any, Any],
    cancellation_id: Annotated[str, Parameter(description="The cancellation's id (ULID)")],
) -> dict[str, Any]:
    """Delete a rule so it stops cancelling runs; runs it already cancelled stay cancelled."""
    try:
        key = str(ULID.from_str(cancellation_id.upper()))
    except ValueError as exc:
        raise ApiError(400, "Invalid cancellation ID") from exc
    if not await engine.delete_cancellation(services_of(request), key):
        raise ApiError(404, "Cancellation not found")
    return envelope({"ok": True})


ROUTES = [create_cancellation, list_cancellations, delete_cancellation]
