"""REST v1 event reads: ``GET /v1/events`` (newest first, cursor-paginated),
``GET /v1/events/{event_id}`` and ``GET /v1/events/{event_id}/runs``.

As upstream: ``limit`` defaults to 20 and is clamped to 1-100, ``cursor`` is the internal id
of the last event of the previous page (events strictly older by internal id follow), and the
window defaults to the last hour (``received_after``) up to now (``received_before``).
Internal ``inngest/*`` events are left out of the list unless ``name`` asks for one by name
(upstream never lists them; asking by name is taken to mean wanting them).  An event id that
is not a ULID is 400 on both routes that take one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import Parameter
from ulid import ULID

from app.http.auth import require_signing_key
from app.http.context import services_of
from app.http.errors import ApiError, error_responses
from app.http.runs import envelope, iso, run_json
from app.store.queue import to_dt
from app.store.runs_view import load_run_row
from domain.ids import ACCOUNT_ID, ENV_ID

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
DEFAULT_WINDOW = timedelta(hours=1)

_COLUMNS = 'internal_id, id, name, data, "user", ts, v, received_at, source'

LIST_EVENTS = f"""
SELECT {_COLUMNS}
  FROM events
 WHERE received_at >= %(after)s AND received_at <= %(before)s
   AND (%(cursor)s::text IS NULL OR internal_id < %(cursor)s)
   AND (%(name)s::text IS NULL OR name = %(name)s)
   AND (%(name)s::text IS NOT NULL OR name NOT LIKE 'inngest/%%')
 ORDER BY internal_id DESC
 LIMIT %(limit)s
"""

GET_EVENT = f"SELECT {_COLUMNS} FROM events WHERE internal_id = %s"

RUNS_FOR_EVENT = """
SELECT run_id FROM runs WHERE event_ids @> ARRAY[%s]::text[] ORDER BY run_id
"""

EventIdParam = Annotated[str, Parameter(description="The event's internal id (ULID)")]


def event_json(row: Sequence[Any]) -> dict[str, Any]:
    """REST v1 ``Event``."""
    return {
        "internal_id": row[0],
        "account_id": ACCOUNT_ID,
        "environment_id": ENV_ID,
        "source": row[8],
        "source_id": None,
        "received_at": iso(row[7]),
        "id": row[1],
        "name": row[2],
        "data": row[3],
        "user": row[4],
        "ts": row[5],
        "v": row[6] or None,
    }


def _ulid(value: str, message: str) -> str:
    try:
        return str(ULID.from_str(value.upper()))
    except ValueError as exc:
        raise ApiError(400, message) from exc


def _event_id(value: str) -> str:
    return _ulid(value, f"Invalid event ID: {value}")


def _time(value: str | None, name: str, default: datetime) -> datetime:
    if not value:
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ApiError(400, f"Invalid {name} query parameter") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@get(
    "/v1/events",
    guards=[require_signing_key],
    responses=error_responses(400, 401, 503),
    summary="List events",
    operation_id="ListEvents",
    tags=["Events"],
)
async def list_events(
    request: Request[Any, Any, Any],
    *,
    name: Annotated[str | None, Parameter(description="Only events with this exact name")] = None,
    limit: Annotated[
        int | None,
        Parameter(description="Events per page: 1-100 (clamped), 20 when absent"),
    ] = None,
    cursor: Annotated[
        str | None,
        Parameter(description="Internal id (ULID) of the last event of the previous page"),
    ] = None,
    received_after: Annotated[
        str | None,
        Parameter(description="RFC 3339 time; events received at or after it (default 1h ago)"),
    ] = None,
    received_before: Annotated[
        str | None,
        Parameter(description="RFC 3339 time; events received at or before it (default now)"),
    ] = None,
) -> dict[str, Any]:
    """Recent events, newest first; page with ``cursor`` = the last ``internal_id`` seen."""
    services = services_of(request)
    now = to_dt(services.clock.now_ms())
    params = {
        "name": name or None,
        "limit": min(max(limit or DEFAULT_LIMIT, 1), MAX_LIMIT),
        "cursor": _ulid(cursor, "Invalid cursor query parameter") if cursor else None,
        "after": _time(received_after, "received_after", now - DEFAULT_WINDOW),
        "before": _time(received_before, "received_before", now),
    }
    async with services.read_db.connection() as conn:
        cur = await conn.execute(LIST_EVENTS, params)
        rows = await cur.fetchall()
    return envelope([event_json(r) for r in rows])


@get(
    "/v1/events/{event_id:str}",
    guards=[require_signing_key],
    responses=error_responses(400, 401, 404, 503),
    summary="Get an event",
    operation_id="GetEvent",
    tags=["Events"],
)
async def get_event(request: Request[Any, Any, Any], event_id: EventIdParam) -> dict[str, Any]:
    """One event, by the internal id that ``POST /e/{key}`` returned for it."""
    internal_id = _event_id(event_id)
    async with services_of(request).read_db.connection() as conn:
        cur = await conn.execute(GET_EVENT, (internal_id,))
        row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "Event not found")
    return envelope(event_json(row))


@get(
    "/v1/events/{event_id:str}/runs",
    guards=[require_signing_key],
    responses=error_responses(400, 401, 503),
    summary="List an event's function runs",
    operation_id="GetEventRuns",
    tags=["Events"],
)
async def runs_for_event(request: Request[Any, Any, Any], event_id: EventIdParam) -> dict[str, Any]:
    """The runs an event (by internal id) started; none for an event id nothing knows."""
    internal_id = _event_id(event_id)
    async with services_of(request).read_db.connection() as conn:
        cur = await conn.execute(RUNS_FOR_EVENT, (internal_id,))
        rows = [await load_run_row(conn, r[0]) for r in await cur.fetchall()]
    return envelope([run_json(r) for r in rows if r is not None])


ROUTES = [list_events, get_event, runs_for_event]
