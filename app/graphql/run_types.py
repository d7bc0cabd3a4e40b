"""The current GraphQL run and event types: ``FunctionRunV2`` (with its ``trace``), the
``runs``/``eventsV2`` connections, ``EventV2`` and ``RunTraceTrigger``.

``FunctionRunV2.output`` is ``Bytes``: the JSON text of the return value, or of the error for a
failed run.  ``RunTraceTrigger.payloads`` are the JSON texts of the trigger events exactly as
SDKs see them (``name, data, user, id``, integer ``ts``), since the Python SDK's test helpers
parse ``payloads[0]`` strictly; its ``timestamp`` is the earliest trigger id's time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import strawberry

from app.graphql.context import GqlInfo, loaders
from app.graphql.legacy_types import FunctionRunStatus, run_output, run_status
from app.graphql.registry_types import App, Function, make_app, make_function
from app.graphql.scalars import ULID, UUID, Bytes, Time, json_text, ms_time, time_of
from app.graphql.trace_types import RunTraceSpan, run_trace, trace_id
from app.store.read_queries import EventRecord
from domain import history as h
from domain.ids import ENV_ID, is_ulid, ulid_ms
from projections.runs import RunRow


@strawberry.type
class PageInfo:
    hasNextPage: bool
    hasPreviousPage: bool
    startCursor: str | None = None
    endCursor: str | None = None


@strawberry.type
class FunctionRunV2:
    row: strawberry.Private[RunRow]
    id: ULID
    appID: UUID
    functionID: UUID
    traceID: str
    queuedAt: Time
    startedAt: Time | None
    endedAt: Time | None
    status: FunctionRunStatus
    sourceID: str | None
    triggerIDs: list[ULID]
    eventName: str | None
    isBatch: bool
    batchCreatedAt: Time | None
    cronSchedule: str | None
    output: Bytes | None
    hasAI: bool
    isDeferred: bool

    @strawberry.field
    async def app(self, info: GqlInfo) -> App:
        record = await loaders(info).app(self.row.app_id)
        if record is None:
            raise LookupError(f"app {self.row.app_id} of run {self.row.run_id} is gone")
        return make_app(record)

    @strawberry.field
    async def function(self, info: GqlInfo) -> Function:
        record = await loaders(info).function(self.row.function_id)
        if record is None:
            raise LookupError(f"function {self.row.function_id} of run {self.row.run_id} is gone")
        return make_function(record)

    @strawberry.field
    async def trace(self, info: GqlInfo, preview: bool | None = None) -> RunTraceSpan | None:
        return await run_trace(info, self.row)

    @classmethod
    def of(cls, row: RunRow) -> FunctionRunV2:
        output = run_output(row)
        return cls(
            row=row, id=ULID(row.run_id), appID=UUID(row.app_id),
            functionID=UUID(row.function_id), traceID=trace_id(row.run_id),
            queuedAt=Time(row.queued_at),
            startedAt=time_of(row.started_at), endedAt=time_of(row.ended_at),
            status=run_status(row), sourceID=None,
            triggerIDs=[ULID(i) for i in row.event_ids if is_ulid(i)],
            eventName=None if row.cron else row.event_name, isBatch=row.batch_id is not None,
            batchCreatedAt=ms_time(ulid_ms(row.batch_id)) if row.batch_id else None,
            cronSchedule=row.cron, output=None if output is None else Bytes(output),
            hasAI=False, isDeferred=False,
        )  # fmt: skip


@strawberry.type
class FunctionRunV2Edge:
    node: FunctionRunV2
    cursor: str


@strawberry.type
class RunsV2Connection:
    edges: list[FunctionRunV2Edge]
    pageInfo: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def totalCount(self, preview: bool | None = None) -> int:
        return await self.count()


@strawberry.type
class RunTraceTrigger:
    eventName: str | None
    IDs: list[ULID]
    payloads: list[Bytes]
    timestamp: Time
    isBatch: bool
    batchID: ULID | None
    cron: str | None


async def run_trigger(info: GqlInfo, row: RunRow) -> RunTraceTrigger:
    ld = loaders(info)
    ids = [i for i in row.event_ids if is_ulid(i)]
    stored = await ld.events(tuple(ids))
    events = [e.as_event() for e in stored]
    if len(stored) < len(ids):
        # Events older than the retention window are gone; the run's history still has them.
        first = next(iter(await ld.history(row.run_id)), None)
        if isinstance(first, h.RunScheduled):
            events = [dict(e) for e in first.events]
    names = {e.get("name") for e in events}
    earliest = min((ulid_ms(i) for i in ids), default=None)
    return RunTraceTrigger(
        eventName=str(names.pop()) if len(names) == 1 and not row.cron else None,
        IDs=[ULID(i) for i in ids],
        payloads=[Bytes(json_text(e)) for e in events],
        timestamp=ms_time(earliest) if earliest else Time(row.queued_at),
        isBatch=row.batch_id is not None,
        batchID=ULID(row.batch_id) if row.batch_id else None,
        cron=row.cron,
    )


@strawberry.type
class EventSource:
    id: strawberry.ID
    name: str | None
    sourceKind: str


@strawberry.type
class EventV2:
    record: strawberry.Private[EventRecord]
    envID: UUID
    id: ULID
    idempotencyKey: str | None
    name: str
    occurredAt: Time
    raw: str
    receivedAt: Time
    source: EventSource | None
    version: str | None

    @strawberry.field
    async def runs(self, info: GqlInfo) -> list[FunctionRunV2]:
        rows = await loaders(info).runs_of_event(self.record.internal_id)
        return [FunctionRunV2.of(r) for r in rows]

    @classmethod
    def of(cls, r: EventRecord) -> EventV2:
        return cls(
            record=r, envID=UUID(ENV_ID), id=ULID(r.internal_id), idempotencyKey=r.id or None,
            name=r.name, occurredAt=ms_time(r.ts) if r.ts else Time(r.received_at),
            raw=json_text(r.as_event()), receivedAt=Time(r.received_at),
            source=EventSource(id=strawberry.ID(r.source), name=r.source, sourceKind=r.source),
            version=r.v,
        )  # fmt: skip


@strawberry.type
class EventsEdge:
    node: EventV2
    cursor: str


@strawberry.type
class EventsConnection:
    edges: list[EventsEdge]
    pageInfo: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def totalCount(self) -> int:
        return await self.count()
