"""Read-side SQL for the API: listing runs and events, and the links between them.

Runs are listed from the ``runs`` view with keyset pagination: a page continues strictly after
the (sort time, run id) of the previous page's last row, in the order asked for, so pages stay
stable while new runs arrive and no query ever counts past an offset.  The statement is
assembled from fixed fragments, one per filter actually given, rather than one statement with
``%s IS NULL OR …`` guards: a prepared generic plan of the guarded form cannot use the indexes
on ``(queued_at, run_id)``, ``(function_id, queued_at)`` and ``(status, queued_at)``.  Sorting on
``started_at``/``ended_at`` treats a missing time as the epoch (not started runs sort last
descending).  Events are listed newest first by internal id (ULIDs sort by time); the runs of
events are found through ``runs.event_ids``, which wants a GIN index to stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from psycopg import sql

from app.store.db import AsyncConn
from projections.runs import RunRow

RUN_COLUMNS = sql.SQL(
    "run_id, function_id, function_slug, function_version, app_id, status, queued_at, "
    "started_at, ended_at, event_ids, event_name, batch_id, cron, original_run_id, output"
)
EVENT_COLUMNS = sql.SQL('internal_id, id, name, data, "user", ts, v, received_at, source')

INTERNAL_PREFIX = "inngest/%"


class TimeField(Enum):
    """A run time to filter or sort on; the value is the ``runs`` column."""

    QUEUED_AT = "queued_at"
    STARTED_AT = "started_at"
    ENDED_AT = "ended_at"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunsFilter:
    since: datetime
    until: datetime
    time_field: TimeField = TimeField.QUEUED_AT
    statuses: tuple[str, ...] = ()
    function_ids: tuple[str, ...] = ()
    app_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunsOrder:
    field: TimeField = TimeField.QUEUED_AT
    descending: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPosition:
    """Where a run sits in a listing: its sort time (never null) and id."""

    at: datetime
    run_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    internal_id: str
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    v: str | None
    received_at: datetime
    source: str

    @property
    def is_internal(self) -> bool:
        return self.name.startswith("inngest/")

    def as_event(self) -> dict[str, Any]:
        """The event as SDKs see it and send it: ``name, data, user, id, ts`` (+ ``v``)."""
        event: dict[str, Any] = {
            "name": self.name,
            "data": self.data,
            "user": self.user,
            "id": self.id,
            "ts": self.ts,
        }
        if self.v:
            event["v"] = self.v
        return event


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsFilter:
    names: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    include_internal: bool = True
    #: Internal ids strictly between these bounds (exclusive); ``before`` is the paging cursor.
    after_id: str | None = None
    before_id: str | None = None


# --- runs ---


def _sort_key(field: TimeField) -> sql.Composable:
    if field is TimeField.QUEUED_AT:
        return sql.Identifier("queued_at")  # never null: a plain column keeps the index usable
    return sql.SQL("COALESCE({}, 'epoch'::timestamptz)").format(sql.Identifier(field.value))


def position_of(row: RunRow, order: RunsOrder) -> RunPosition:
    """The keyset position of ``row`` under ``order`` (for the next page's cursor)."""
    at = getattr(row, order.field.value) or datetime.fromtimestamp(0, row.queued_at.tzinfo)
    return RunPosition(at=at, run_id=row.run_id)


def _runs_where(
    filt: RunsFilter, order: RunsOrder, after: RunPosition | None
) -> tuple[sql.Composable, dict[str, Any]]:
    column = sql.Identifier(filt.time_field.value)
    clauses: list[sql.Composable] = [
        sql.SQL("{c} >= %(since)s AND {c} < %(until)s").format(c=column)
    ]
    params: dict[str, Any] = {"since": filt.since, "until": filt.until}
    for key, column_name, values in (
        ("statuses", "status", filt.statuses),
        ("function_ids", "function_id", filt.function_ids),
        ("app_ids", "app_id", filt.app_ids),
    ):
        if values:
            clauses.append(
                sql.SQL("{} = ANY({})").format(sql.Identifier(column_name), sql.Placeholder(key))
            )
            params[key] = list(values)
    if after is not None:
        comparison = sql.SQL("<" if order.descending else ">")
        clauses.append(
            sql.SQL("({}, run_id) {} (%(after_at)s, %(after_id)s)").format(
                _sort_key(order.field), comparison
            )
        )
        params.update(after_at=after.at, after_id=after.run_id)
    return sql.SQL(" AND ").join(clauses), params


async def list_runs(
    conn: AsyncConn,
    filt: RunsFilter,
    order: RunsOrder,
    *,
    after: RunPosition | None = None,
    limit: int = 40,
) -> list[RunRow]:
    """One page of runs matching ``filt`` in ``order``, continuing after ``after``."""
    where, params = _runs_where(filt, order, after)
    direction = sql.SQL("DESC" if order.descending else "ASC")
    query = sql.SQL(
        "SELECT {columns} FROM runs WHERE {where} "
        "ORDER BY {key} {direction}, run_id {direction} LIMIT %(limit)s"
    ).format(columns=RUN_COLUMNS, where=where, key=_sort_key(order.field), direction=direction)
    cur = await conn.execute(query, {**params, "limit": limit})
    return [run_row(r) for r in await cur.fetchall()]


async def count_runs(conn: AsyncConn, filt: RunsFilter) -> int:
    where, params = _runs_where(filt, RunsOrder(), None)
    cur = await conn.execute(sql.SQL("SELECT count(*) FROM runs WHERE {}").format(where), params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def runs_for_events(conn: AsyncConn, event_ids: Sequence[str]) -> list[RunRow]:
    """Runs triggered by any of ``event_ids`` (internal ids), oldest first."""
    if not event_ids:
        return []
    # ``&&`` (overlap) is what a GIN index on event_ids serves; one id is the common case.
    query = sql.SQL(
        "SELECT {} FROM runs WHERE event_ids && %s::text[] ORDER BY queued_at, run_id"
    ).format(RUN_COLUMNS)
    cur = await conn.execute(query, (list(event_ids),))
    return [run_row(r) for r in await cur.fetchall()]


def run_row(r: Sequence[Any]) -> RunRow:
    return RunRow(
        run_id=r[0], function_id=r[1], function_slug=r[2], function_version=r[3], app_id=r[4],
        status=r[5], queued_at=r[6], started_at=r[7], ended_at=r[8], event_ids=tuple(r[9]),
        event_name=r[10], batch_id=r[11], cron=r[12], original_run_id=r[13], output=r[14],
    )  # fmt: skip


# --- events ---


def _events_where(filt: EventsFilter) -> tuple[sql.Composable, dict[str, Any]]:
    clauses: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, Any] = {}
    fragments: tuple[tuple[str, Any, str], ...] = (
        ("names", list(filt.names) or None, "name = ANY(%(names)s)"),
        ("since", filt.since, "received_at >= %(since)s"),
        ("until", filt.until, "received_at < %(until)s"),
        ("after_id", filt.after_id, "internal_id > %(after_id)s"),
        ("before_id", filt.before_id, "internal_id < %(before_id)s"),
    )
    for key, value, fragment in fragments:
        if value is not None:
            clauses.append(sql.SQL(fragment))  # one of the fixed fragments above
            params[key] = value
    if not filt.include_internal:
        clauses.append(sql.SQL("name NOT LIKE %(internal)s"))
        params["internal"] = INTERNAL_PREFIX
    return sql.SQL(" AND ").join(clauses), params


async def list_events(conn: AsyncConn, filt: EventsFilter, *, limit: int) -> list[EventRecord]:
    """Events matching ``filt``, newest first."""
    where, params = _events_where(filt)
    query = sql.SQL(
        "SELECT {} FROM events WHERE {} ORDER BY internal_id DESC LIMIT %(limit)s"
    ).format(EVENT_COLUMNS, where)
    cur = await conn.execute(query, {**params, "limit": limit})
    return [event_record(r) for r in await cur.fetchall()]


async def count_events(conn: AsyncConn, filt: EventsFilter) -> int:
    where, params = _events_where(filt)
    cur = await conn.execute(sql.SQL("SELECT count(*) FROM events WHERE {}").format(where), params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def event_by_internal_id(conn: AsyncConn, internal_id: str) -> EventRecord | None:
    query = sql.SQL("SELECT {} FROM events WHERE internal_id = %s").format(EVENT_COLUMNS)
    cur = await conn.execute(query, (internal_id,))
    row = await cur.fetchone()
    return None if row is None else event_record(row)


async def events_by_ids(conn: AsyncConn, internal_ids: Sequence[str]) -> list[EventRecord]:
    """The events with these internal ids, in the order the ids were given."""
    if not internal_ids:
        return []
    query = sql.SQL("SELECT {} FROM events WHERE internal_id = ANY(%s)").format(EVENT_COLUMNS)
    cur = await conn.execute(query, (list(internal_ids),))
    found = {r.internal_id: r for r in map(event_record, await cur.fetchall())}
    return [found[i] for i in internal_ids if i in found]


def event_record(r: Sequence[Any]) -> EventRecord:
    return EventRecord(
        internal_id=r[0], id=r[1], name=r[2], data=r[3], user=r[4], ts=r[5], v=r[6],
        received_at=r[7], source=r[8],
    )  # fmt: skip
