"""Run endpoints: REST v1 run reads and cancellation, and the SDK's ``use_api`` state fetch.

* ``GET /v1/runs/{id}``, ``DELETE /v1/runs/{id}`` (also ``DELETE /v0/runs/{id}``),
  ``GET /v1/runs/{id}/jobs`` — REST v1 envelopes ``{"data": …, "metadata": …}``
  (``envelope``; ``GET /v1/events/{id}/runs`` is in ``app.http.rest_events``).
* ``GET /v0/runs/{id}/batch`` and ``/actions`` — what an SDK fetches when a request was too
  large to carry the events and step results (protocol §2.1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, delete, get
from litestar.params import Parameter

from app.engine.transitions import run_command
from app.http.auth import require_signing_key
from app.http.context import services_of
from app.http.errors import ApiError, error_responses
from app.store.history import load_history
from app.store.runs_view import load_run_row
from domain import commands as c
from domain.ids import ENV_ID, is_ulid
from domain.run import fold
from projections.runs import RunRow

# A job's position is its rank in its function's queue, in claim order (score, then id) —
# what upstream reports as the item's rank in the function's queue set.  A leased item's
# ``available_at`` is its lease expiry: when it would be retried if its worker died.
RUN_JOBS = """
SELECT q.kind, q.available_at, q.attempt,
       (SELECT count(*) FROM queue_items o
         WHERE o.function_id = q.function_id AND (o.score, o.id) < (q.score, q.id))
  FROM queue_items q
 WHERE q.run_id = %s
 ORDER BY q.score, q.id
 LIMIT 1000
"""

RunIdParam = Annotated[str, Parameter(description="The run's id (ULID)")]


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, as the REST v1 times are written; None stays None."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_json(row: RunRow) -> dict[str, Any]:
    """REST v1 ``FunctionRun``."""
    out: dict[str, Any] = {
        "run_id": row.run_id,
        "run_started_at": iso(row.started_at or row.queued_at),
        "function_id": row.function_id,
        "function_version": row.function_version,
        "environment_id": ENV_ID,
        "event_id": row.event_ids[0] if row.event_ids else None,
        "status": row.status,
        "ended_at": iso(row.ended_at),
        "output": row.output,
    }
    for key in ("batch_id", "original_run_id", "cron"):
        if getattr(row, key):
            out[key] = getattr(row, key)
    return out


def envelope(data: Any) -> dict[str, Any]:
    """The REST v1 success envelope around ``data``."""
    return {"data": data, "metadata": {"fetched_at": iso(datetime.now(UTC)), "cached_until": None}}


def _check_id(run_id: str) -> None:
    if not is_ulid(run_id):
        raise ApiError(400, f"invalid run id: {run_id!r} is not a ULID")


@get(
    "/v1/runs/{run_id:str}",
    guards=[require_signing_key],
    responses=error_responses(400, 401, 404, 503),
    summary="Get a function run",
    operation_id="GetFunctionRun",
    tags=["Function runs"],
)
async def get_run(request: Request[Any, Any, Any], run_id: RunIdParam) -> dict[str, Any]:
    """A run's status and output."""
    _check_id(run_id)
    async with services_of(request).read_db.connection() as conn:
        row = await load_run_row(conn, run_id)
    if row is None:
        raise ApiError(404, f"Unable to load function run: run {run_id} not found")
    return envelope(run_json(row))


@delete(
    ["/v1/runs/{run_id:str}", "/v0/runs/{run_id:str}"],
    status_code=200,
    guards=[require_signing_key],
    responses=error_responses(400, 401, 404, 503),
    summary="Cancel a function run",
    tags=["Function runs"],
)
async def cancel_run(request: Request[Any, Any, Any], run_id: RunIdParam) -> Response[Any]:
    """Cancel a running run (idempotent; an ended run is left as it is)."""
    _check_id(run_id)
    services = services_of(request)
    async with services.ingest_db.connection() as conn:
        if not await load_history(conn, run_id):
            raise ApiError(404, f"run {run_id} not found")
    await run_command(services, run_id, c.CancelRun(reason="cancelled via API"))
    return Response(envelope({"run_id": run_id}), status_code=200)


@get(
    "/v1/runs/{run_id:str}/jobs",
    guards=[require_signing_key],
    responses=error_responses(400, 401, 404, 503),
    summary="Fetch function run jobs",
    operation_id="GetRunJobs",
    tags=["Function runs"],
)
async def run_jobs(request: Request[Any, Any, Any], run_id: RunIdParam) -> dict[str, Any]:
    """The run's queued jobs, earliest first: when each is due (``at``), its ``position`` in
    its function's queue and its ``attempt`` (0-based).  An ended run has none."""
    _check_id(run_id)
    async with services_of(request).read_db.connection() as conn:
        if await load_run_row(conn, run_id) is None:
            raise ApiError(404, f"Unable to load function run: run {run_id} not found")
        cur = await conn.execute(RUN_JOBS, (run_id,))
        rows = await cur.fetchall()
    jobs = [
        {"at": iso(at), "position": pos, "attempt": attempt, "kind": kind}
        for kind, at, attempt, pos in rows
    ]
    return envelope(jobs)


async def _state(request: Request[Any, Any, Any], run_id: str) -> Any:
    _check_id(run_id)
    async with services_of(request).ingest_db.connection() as conn:
        state = fold(await load_history(conn, run_id))
    if not state.exists:
        raise ApiError(404, f"run {run_id} not found")
    if state.is_finished:
        raise ApiError(410, f"run {run_id} has ended; its state is gone")
    return state


@get(
    "/v0/runs/{run_id:str}/batch",
    guards=[require_signing_key],
    tags=["SDK"],
    responses=error_responses(400, 401, 404, 410, 503),
)
async def run_batch(request: Request[Any, Any, Any], run_id: RunIdParam) -> list[Any]:
    """The run's trigger events (for an SDK whose request carried ``use_api``)."""
    state = await _state(request, run_id)
    return [dict(e, user=e.get("user") or {}) for e in state.events]


@get(
    "/v0/runs/{run_id:str}/actions",
    guards=[require_signing_key],
    tags=["SDK"],
    responses=error_responses(400, 401, 404, 410, 503),
)
async def run_actions(request: Request[Any, Any, Any], run_id: RunIdParam) -> dict[str, Any]:
    """The run's memoized step results, shaped like the request's ``steps``."""
    state = await _state(request, run_id)
    return {sid: state.steps[sid] for sid in state.stack}


ROUTES = [get_run, cancel_run, run_jobs, run_batch, run_actions]
