"""Paged listings behind ``runs`` and ``eventsV2``: filters, opaque cursors, CEL queries.

A runs cursor is ``base64url(JSON [field, direction, sort time, run id])`` — the keyset position
of the edge — and is only valid with the ordering it was made for.  An events cursor is the
event's internal id.  A CEL ``query`` (over ``event``, the run's first trigger or the event
itself) cannot be turned into SQL in general, so it is evaluated here on batches of rows read
in order until the page is full; scanning stops after ``CEL_SCAN_LIMIT`` rows per request, so a
rare match deep in a large window may need the next page.  ``totalCount`` with a query counts
within the same bound.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from app import expressions
from app.graphql.context import BadRequest, Loaders
from app.graphql.inputs import (
    EventsFilter,
    RunsFilterV2,
    RunsOrderByDirection,
    RunsV2OrderBy,
    RunsV2OrderByField,
)
from app.graphql.legacy_types import FunctionRunStatus
from app.graphql.run_types import (
    EventsConnection,
    EventsEdge,
    EventV2,
    FunctionRunV2,
    FunctionRunV2Edge,
    PageInfo,
    RunsV2Connection,
)
from app.store import read_queries as rq
from app.store.db import AsyncConn
from domain.ids import is_ulid
from domain.run import RunStatus
from projections.runs import RunRow

DEFAULT_PAGE = 40
MAX_PAGE = 400
CEL_SCAN_LIMIT = 50_000
_STATUS = {s: RunStatus[s.name].value for s in FunctionRunStatus}


def page_size(first: int) -> int:
    # As upstream: a size outside (0, MAX_PAGE) falls back to the default.
    return first if 0 < first < MAX_PAGE else DEFAULT_PAGE


def _compile(query: str | None) -> expressions.CompiledExpression | None:
    if not query or not query.strip():
        return None
    try:
        return expressions.compile_expression(query)
    except expressions.ExpressionError as exc:
        raise BadRequest(f"invalid query: {exc}") from None


def _holds(expr: expressions.CompiledExpression, event: Any) -> bool:
    try:
        return expr.evaluate({"event": event or {}}) is True
    except expressions.ExpressionError:
        return False


# --- runs ---


def runs_order(order_by: Sequence[RunsV2OrderBy]) -> rq.RunsOrder:
    """The first ordering given (ties broken by run id); newest queued first by default."""
    if not order_by:
        return rq.RunsOrder()
    first = order_by[0]
    return rq.RunsOrder(
        field=rq.TimeField[first.field.name],
        descending=first.direction is RunsOrderByDirection.DESC,
    )


def runs_filter(f: RunsFilterV2, now: datetime) -> rq.RunsFilter:
    return rq.RunsFilter(
        since=f.from_,
        until=f.until or now,
        time_field=rq.TimeField[(f.timeField or RunsV2OrderByField.QUEUED_AT).name],
        statuses=tuple(_STATUS[s] for s in f.status or ()),
        function_ids=tuple(f.functionIDs or ()),
        app_ids=tuple(f.appIDs or ()),
    )


def encode_cursor(row: RunRow, order: rq.RunsOrder) -> str:
    pos = rq.position_of(row, order)
    raw = [order.field.name, "DESC" if order.descending else "ASC", pos.at.isoformat(), pos.run_id]
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: rq.RunsOrder) -> rq.RunPosition:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        field, direction, at, run_id = raw
        position = rq.RunPosition(at=datetime.fromisoformat(at), run_id=str(run_id))
    except (binascii.Error, ValueError, TypeError):
        raise BadRequest(f"invalid cursor: {cursor!r}") from None
    if (field, direction) != (order.field.name, "DESC" if order.descending else "ASC"):
        raise BadRequest("the cursor was made for another ordering")
    return position


async def _run_events(conn: AsyncConn, rows: Sequence[RunRow]) -> dict[str, Any]:
    firsts = [r.event_ids[0] for r in rows if r.event_ids]
    return {e.internal_id: e.as_event() for e in await rq.events_by_ids(conn, firsts)}


async def _matching_runs(
    conn: AsyncConn,
    *,
    filt: rq.RunsFilter,
    order: rq.RunsOrder,
    after: rq.RunPosition | None,
    want: int,
    expr: expressions.CompiledExpression,
) -> list[RunRow]:
    """Up to ``want`` runs (in order, after ``after``) whose trigger satisfies ``expr``."""
    matched: list[RunRow] = []
    scanned = 0
    batch = max(want * 4, 200)
    while len(matched) < want and scanned < CEL_SCAN_LIMIT:
        rows = await rq.list_runs(conn, filt, order, after=after, limit=batch)
        events = await _run_events(conn, rows)
        for row in rows:
            first = row.event_ids[0] if row.event_ids else ""
            if _holds(expr, events.get(first)):
                matched.append(row)
        scanned += len(rows)
        if len(rows) < batch:
            break
        after = rq.position_of(rows[-1], order)
    return matched[:want]


async def runs_connection(
    ld: Loaders,
    *,
    first: int,
    after: str | None,
    order_by: Sequence[RunsV2OrderBy],
    filt: RunsFilterV2,
) -> RunsV2Connection:
    order = runs_order(order_by)
    now = datetime.fromtimestamp(ld.services.clock.now_ms() / 1000, UTC)
    query = runs_filter(filt, now)
    position = decode_cursor(after, order) if after else None
    expr = _compile(filt.query)
    size = page_size(first)
    async with ld.services.read_db.connection() as conn:
        if expr is None:
            rows = await rq.list_runs(conn, query, order, after=position, limit=size + 1)
        else:
            rows = await _matching_runs(
                conn, filt=query, order=order, after=position, want=size + 1, expr=expr
            )
    edges = [FunctionRunV2Edge(node=FunctionRunV2.of(r), cursor=encode_cursor(r, order))
             for r in rows[:size]]  # fmt: skip

    async def count() -> int:
        async with ld.services.read_db.connection() as conn:
            if expr is None:
                return await rq.count_runs(conn, query)
            matches = await _matching_runs(
                conn, filt=query, order=order, after=None, want=CEL_SCAN_LIMIT, expr=expr
            )
            return len(matches)

    return RunsV2Connection(edges=edges, pageInfo=_page_info(edges, len(rows) > size),
                            count=count)  # fmt: skip


def _page_info(edges: Sequence[FunctionRunV2Edge | EventsEdge], more: bool) -> PageInfo:
    return PageInfo(
        hasNextPage=more,
        hasPreviousPage=False,
        startCursor=edges[0].cursor if edges else None,
        endCursor=edges[-1].cursor if edges else None,
    )


# --- events ---


def events_filter(f: EventsFilter, now: datetime) -> rq.EventsFilter:
    return rq.EventsFilter(
        names=tuple(f.eventNames or ()),
        since=f.from_,
        until=f.until or now,
        include_internal=f.includeInternalEvents,
    )


async def _matching_events(
    conn: AsyncConn, filt: rq.EventsFilter, want: int, expr: expressions.CompiledExpression | None
) -> list[rq.EventRecord]:
    if expr is None:
        return await rq.list_events(conn, filt, limit=want)
    matched: list[rq.EventRecord] = []
    scanned, batch = 0, max(want * 4, 200)
    while len(matched) < want and scanned < CEL_SCAN_LIMIT:
        records = await rq.list_events(conn, filt, limit=batch)
        matched += [r for r in records if _holds(expr, r.as_event())]
        scanned += len(records)
        if len(records) < batch:
            break
        filt = replace(filt, before_id=records[-1].internal_id)
    return matched[:want]


async def events_connection(
    ld: Loaders, *, first: int, after: str | None, filt: EventsFilter
) -> EventsConnection:
    if after is not None and not is_ulid(after):
        raise BadRequest(f"invalid cursor: {after!r}")
    now = datetime.fromtimestamp(ld.services.clock.now_ms() / 1000, UTC)
    base = events_filter(filt, now)
    query = replace(base, before_id=after)
    expr = _compile(filt.query)
    size = page_size(first)
    async with ld.services.read_db.connection() as conn:
        records = await _matching_events(conn, query, size + 1, expr)
    edges = [EventsEdge(node=EventV2.of(r), cursor=r.internal_id) for r in records[:size]]

    async def count() -> int:
        async with ld.services.read_db.connection() as conn:
            if expr is None:
                return await rq.count_events(conn, base)
            return len(await _matching_events(conn, base, CEL_SCAN_LIMIT, expr))

    return EventsConnection(edges=edges, pageInfo=_page_info(edges, len(records) > size),
                            count=count)  # fmt: skip
