"""``POST /v1/runs/{run_id}/metadata``: metadata an SDK adds to a run outside of a step.

The TS SDK calls it (``inngest.metadata.set()``/``update()`` outside a ``step.run``, or aimed
at another run or step) with ``{target: {run_id, step_id?, step_index?, step_attempt?,
span_id?}, metadata: [{kind, op, values}]}``.  As upstream (``pkg/api/apiv1/metadata.go``) the
path names the run, ``target`` picks the run, a step (its user id, hashed like the SDK's), an
attempt of it or a span, and success is 200 with an empty body.  The updates are appended to
the run's history as ``MetadataAdded`` through the engine's command path, all of them in one
transaction or none.

Errors: 400 for a bad run id, body, target or update (``domain.metadata``'s rules), 404 for
an unknown run, 409 once the run has ended (its history is closed), 413 for an update over
64 KiB, a run over its 1 MiB (or update count) budget, or a body over ``MAX_BODY_BYTES``.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, post
from litestar.params import Body

from app.engine.transitions import apply_command
from app.http.auth import require_signing_key
from app.http.context import services_of
from app.http.errors import ApiError, error_responses
from app.http.runs import RunIdParam
from domain import commands as c
from domain import metadata as md
from domain.ids import is_ulid

#: Room for a run's whole 1 MiB metadata budget in one request, with its JSON around it.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Updates in one request: far more than an SDK sends (one), well under the per-run count.
MAX_UPDATES_PER_REQUEST = 100

Payload = Annotated[
    Any,
    Body(
        description="`{target: {run_id, step_id?, step_index?, step_attempt?, span_id?}, "
        "metadata: [{kind, op, values}]}`; `op` is merge, set, delete or add"
    ),
]


def parse_request(body: Any) -> tuple[md.Target, tuple[md.Update, ...]]:
    """The target and the updates of a request body; ``ApiError`` 400/413 when it is bad."""
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid metadata target: the body must be a JSON object")
    try:
        target = md.parse_target(body.get("target"))
    except md.InvalidMetadata as exc:
        raise ApiError(400, f"Invalid metadata target: {exc}") from exc
    raw = body.get("metadata")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "Invalid metadata: metadata must be a non-empty array of updates")
    if len(raw) > MAX_UPDATES_PER_REQUEST:
        raise ApiError(413, f"Invalid metadata: at most {MAX_UPDATES_PER_REQUEST} updates at once")
    updates = []
    for i, item in enumerate(raw):
        try:
            update = md.parse_update(item)
            md.validate_allowed(update)
            md.check_size(update)
        except md.MetadataTooLarge as exc:
            raise ApiError(413, f"metadata[{i}]: {exc}") from exc
        except md.InvalidMetadata as exc:
            raise ApiError(400, f"Invalid metadata: metadata[{i}]: {exc}") from exc
        updates.append(update)
    return target, tuple(updates)


@post(
    "/v1/runs/{run_id:str}/metadata",
    status_code=200,
    guards=[require_signing_key],
    request_max_body_size=MAX_BODY_BYTES,
    responses=error_responses(400, 401, 404, 409, 413, 503),
    summary="Add metadata to a function run",
    operation_id="AddRunMetadata",
    tags=["Function runs"],
)
async def add_run_metadata(
    request: Request[Any, Any, Any], run_id: RunIdParam, data: Payload
) -> Response[bytes]:
    """Record metadata for a run, one of its steps (or an attempt of one), or a span.

    The dev UI and GraphQL show it on the targeted trace span, one entry per kind with its
    updates combined.
    """
    if not is_ulid(run_id):
        raise ApiError(400, f"Invalid run ID: {run_id}")
    target, updates = parse_request(data)
    services = services_of(request)
    applied = await apply_command(services, run_id, c.AddMetadata(target=target, updates=updates))
    if applied.decision is None or not applied.decision.events:
        state = applied.snapshot.state if applied.snapshot is not None else None
        reason = md.api_refusal(state, updates) if state is not None else "not_found"
        if reason == "not_found":
            raise ApiError(404, f"Unable to find metadata target: run {run_id} not found")
        if reason == "ended":
            raise ApiError(409, f"run {run_id} has ended: metadata can no longer be added to it")
        if reason is None:  # decide records whenever api_refusal finds nothing against it
            raise RuntimeError(f"metadata for run {run_id} was neither recorded nor refused")
        raise ApiError(413, reason)
    return Response(b"", status_code=200)  # upstream answers success with no body


ROUTES = [add_run_metadata]
