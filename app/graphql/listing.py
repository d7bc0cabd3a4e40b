"""Paged listings behind ``runs`` and ``eventsV2``: filters, opaque cursors, CEL queries.

A runs cursor is ``base64url(JSON [field, direction, sort time, run id])`` — the keyset position
of the edge — and is only valid with the ordering it was made for.  An events cursor is the
event's internal id.  A CEL ``query`` (over ``event``, the run's first trigger or the event
itself) cannot be turned into SQL in general, so rows are read in order, in batches, and
judged by ``CelFilter`` (off the event loop, within the request's evaluation budget) until the
page is full.  One scan reads at most ``CEL_SCAN_LIMIT`` rows: when it stops there, the page
is what matched so far (possibly nothing) with ``hasNextPage`` true and ``endCursor`` at the
last row read, so a client pages on through a large window a bounded step at a time.
``totalCount`` with a query counts the matches among the first ``CEL_SCAN_LIMIT`` rows of the
window, the same horizon as a page (a lower bound when the window holds more).  An expression
too costly for the request's evaluation budget is an error (``QUERY_BUDGET_EXCEEDED``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

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
from app.graphql.limits import CEL_BATCH, CEL_SCAN_LIMIT, page_size
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
from domain.ids import is_ulid
from domain.run import RunStatus
from projections.runs import RunRow

_STATUS = {s: RunStatus[s.name].value for s in FunctionRunStatus}
Row = TypeVar("Row")


def _compile(query: str | None) -> expressions.CompiledExpression | None:
    if not query or not query.strip():
        return None
    try:
        return expressions.compile_expression(query)
    except expressions.ExpressionError as exc:
        raise BadRequest(f"invalid query: {exc}") from None


@dataclass(frozen=True, slots=True)
class Scan(Generic[Row]):
    """Rows that matched, in order, and the last row read when the scan stopped at its bound."""

    matched: list[Row]
    stopped_at: Row | None = None


async def _scan(
    read: Callable[[int, Row | None], Awaitable[list[tuple[Row, str, Any]]]],
    judge: Callable[[list[tuple[str, Any]]], Awaitable[list[bool]]],
    want: int,
) -> Scan[Row]:
    """Read ``(row, event id, event)`` batches after the last row read and keep the matches."""
    matched: list[Row] = []
    scanned, last = 0, None
    while len(matched) < want:
        if scanned >= CEL_SCAN_LIMIT:
            return Scan(matched, stopped_at=last)
        limit = min(CEL_BATCH, CEL_SCAN_LIMIT - scanned)
        batch = await read(limit, last)
        verdicts = await judge([(key, event) for _, key, event in batch])
        matched += [row for (row, _, _), ok in zip(batch, verdicts, strict=True) if ok]
        scanned += len(batch)
        if len(batch) < limit:
            break
        last = batch[-1][0]
    return Scan(matched[:want])


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


async def _matching_runs(
    ld: Loaders,
    *,
    filt: rq.RunsFilter,
    order: rq.RunsOrder,
    after: rq.RunPosition | None,
    want: int,
    expr: expressions.CompiledExpression,
) -> Scan[RunRow]:
    """Up to ``want`` runs (in order, after ``after``) whose first trigger satisfies ``expr``."""

    async def read(limit: int, last: RunRow | None) -> list[tuple[RunRow, str, Any]]:
        start = after if last is None else rq.position_of(last, order)
        # The connection is held for the reads only, not while the batch is being judged.
        async with ld.reads.connection() as conn:
            rows = await rq.list_runs(conn, filt, order, after=start, limit=limit)
            firsts = [r.event_ids[0] for r in rows if r.event_ids]
            events = {e.internal_id: e.as_event() for e in await rq.events_by_ids(conn, firsts)}
        keyed = [(r, r.event_ids[0] if r.event_ids else "") for r in rows]
        return [(r, key, events.get(key)) for r, key in keyed]

    return await _scan(read, lambda batch: ld.cel.verdicts(expr, batch), want)


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
    if expr is None:
        async with ld.reads.connection() as conn:
            scan = Scan(await rq.list_runs(conn, query, order, after=position, limit=size + 1))
    else:
        scan = await _matching_runs(
            ld, filt=query, order=order, after=position, want=size + 1, expr=expr
        )
    rows = scan.matched
    edges = [FunctionRunV2Edge(node=FunctionRunV2.of(r), cursor=encode_cursor(r, order))
             for r in rows[:size]]  # fmt: skip
    resume = None if scan.stopped_at is None else encode_cursor(scan.stopped_at, order)

    async def count() -> int:
        if expr is None:
            async with ld.reads.connection() as conn:
                return await rq.count_runs(conn, query)
        matches = await _matching_runs(
            ld, filt=query, order=order, after=None, want=CEL_SCAN_LIMIT, expr=expr
        )
        return len(matches.matched)

    return RunsV2Connection(edges=edges, pageInfo=_page_info(edges, len(rows) > size, resume),
                            count=count)  # fmt: skip


def _page_info(
    edges: Sequence[FunctionRunV2Edge | EventsEdge], more: bool, resume: str | None
) -> PageInfo:
    # A scan that stopped at its bound resumes after the last row it read, not the last match.
    return PageInfo(
        hasNextPage=more or resume is not None,
        hasPreviousPage=False,
        startCursor=edges[0].cursor if edges else None,
        endCursor=resume or (edges[-1].cursor if edges else None),
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
    ld: Loaders, filt: rq.EventsFilter, want: int, expr: expressions.CompiledExpression | None
) -> Scan[rq.EventRecord]:
    if expr is None:
        async with ld.reads.connection() as conn:
            return Scan(await rq.list_events(conn, filt, limit=want))

    async def read(
        limit: int, last: rq.EventRecord | None
    ) -> list[tuple[rq.EventRecord, str, Any]]:
        page = filt if last is None else replace(filt, before_id=last.internal_id)
        async with ld.reads.connection() as conn:
            records = await rq.list_events(conn, page, limit=limit)
        return [(r, r.internal_id, r.as_event()) for r in records]

    return await _scan(read, lambda batch: ld.cel.verdicts(expr, batch), want)


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
    scan = await _matching_events(ld, query, size + 1, expr)
    records = scan.matched
    edges = [EventsEdge(node=EventV2.of(r), cursor=r.internal_id) for r in records[:size]]
    resume = None if scan.stopped_at is None else scan.stopped_at.internal_id

    async def count() -> int:
        if expr is None:
            async with ld.reads.connection() as conn:
                return await rq.count_events(conn, base)
        return len((await _matching_events(ld, base, CEL_SCAN_LIMIT, expr)).matched)

    return EventsConnection(edges=edges, pageInfo=_page_info(edges, len(records) > size, resume),
                            count=count)  # fmt: skip
