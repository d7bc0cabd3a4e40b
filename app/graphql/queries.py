"""The ``Query`` root: apps, functions, events, the event stream, runs, traces and outputs.

Every lookup by run or event id answers an unknown id with an error rather than null: clients
poll while a run is not yet visible, and for them an error means "not yet" where a null would
mean "gone".
"""

from __future__ import annotations

import strawberry

from app.graphql.context import BadRequest, GqlInfo, NotFound, loaders
from app.graphql.inputs import (
    AppsFilterV1,
    EventQuery,
    EventsFilter,
    EventsQuery,
    FunctionQuery,
    FunctionRunQuery,
    RunsFilterV2,
    RunsV2OrderBy,
    StreamQuery,
)
from app.graphql.legacy_types import Event, FunctionRun, StreamItem, stream_item
from app.graphql.limits import MAX_EVENTS, MAX_STREAM
from app.graphql.listing import events_connection, runs_connection
from app.graphql.registry_types import App, Function, make_app, make_function
from app.graphql.run_types import (
    EventsConnection,
    EventV2,
    FunctionRunV2,
    RunsV2Connection,
    RunTraceTrigger,
    run_trigger,
)
from app.graphql.scalars import ULID, UUID
from app.graphql.trace_types import (
    RunTraceSpan,
    RunTraceSpanOutput,
    make_output,
    parse_output_id,
    run_trace,
)
from app.registry import store as registry
from app.store import read_queries as rq
from domain.ids import is_ulid
from projections.traces import fold_trace


async def _event_record(info: GqlInfo, event_id: str) -> rq.EventRecord:
    if not is_ulid(event_id):
        raise BadRequest(f"invalid event ID: {event_id!r} is not a ULID")
    record = await loaders(info).event(event_id.upper())
    if record is None:
        raise NotFound(f"event {event_id} not found")
    return record


@strawberry.type
class Query:
    @strawberry.field
    async def apps(self, info: GqlInfo, filter: AppsFilterV1 | None = None) -> list[App]:
        async with loaders(info).reads.connection() as conn:
            records = await registry.list_apps(conn)
        method = filter.method.value if filter and filter.method else None
        return [make_app(r) for r in records if method is None or r.method == method]

    @strawberry.field
    async def app(self, info: GqlInfo, id: UUID) -> App | None:
        record = await loaders(info).app(id)
        return None if record is None else make_app(record)

    @strawberry.field
    async def functions(self, info: GqlInfo) -> list[Function] | None:
        async with loaders(info).reads.connection() as conn:
            records = await registry.list_functions(conn)
        return [make_function(r) for r in records]

    @strawberry.field
    async def functionBySlug(self, info: GqlInfo, query: FunctionQuery) -> Function | None:
        async with loaders(info).reads.connection() as conn:
            record = await registry.function_by_slug_or_id(conn, query.functionSlug)
        if record is None:
            raise NotFound(f"function {query.functionSlug} not found")
        return make_function(record)

    @strawberry.field
    async def event(self, info: GqlInfo, query: EventQuery) -> Event | None:
        return Event.of(await _event_record(info, query.eventId))

    @strawberry.field
    async def events(self, info: GqlInfo, query: EventsQuery) -> list[Event] | None:
        before = query.lastEventId
        if before is not None and not is_ulid(before):
            raise BadRequest(f"invalid event ID: {before!r} is not a ULID")
        async with loaders(info).reads.connection() as conn:
            records = await rq.list_events(
                conn, rq.EventsFilter(before_id=before), limit=MAX_EVENTS
            )
        return [Event.of(r) for r in records]

    @strawberry.field
    async def eventV2(self, info: GqlInfo, id: ULID) -> EventV2:
        return EventV2.of(await _event_record(info, id))

    @strawberry.field
    async def eventsV2(
        self, info: GqlInfo, filter: EventsFilter, first: int = 40, after: str | None = None
    ) -> EventsConnection:
        return await events_connection(loaders(info), first=first, after=after, filt=filter)

    @strawberry.field
    async def stream(self, info: GqlInfo, query: StreamQuery) -> list[StreamItem]:
        for bound in (query.after, query.before):
            if bound is not None and not is_ulid(bound):
                raise BadRequest(f"invalid event ID: {bound!r} is not a ULID")
        filt = rq.EventsFilter(
            after_id=query.after,
            before_id=query.before,
            include_internal=bool(query.includeInternalEvents),
        )
        ld = loaders(info)
        async with ld.reads.connection() as conn:
            records = await rq.list_events(conn, filt, limit=max(0, min(query.limit, MAX_STREAM)))
            ids = [r.internal_id for r in records]
            runs = await rq.runs_for_events(conn, ids)
        ld.prime_runs_of_events(ids, runs)
        return [stream_item(r, [x for x in runs if r.internal_id in x.event_ids]) for r in records]

    @strawberry.field
    async def functionRun(self, info: GqlInfo, query: FunctionRunQuery) -> FunctionRun | None:
        return FunctionRun.of(await loaders(info).existing_run(query.functionRunId))

    @strawberry.field
    async def runs(
        self,
        info: GqlInfo,
        *,
        orderBy: list[RunsV2OrderBy],
        filter: RunsFilterV2,
        first: int = 100,
        after: str | None = None,
        preview: bool | None = None,
    ) -> RunsV2Connection:
        return await runs_connection(
            loaders(info), first=first, after=after, order_by=orderBy, filt=filter
        )

    @strawberry.field
    async def run(self, info: GqlInfo, runID: str) -> FunctionRunV2 | None:
        return FunctionRunV2.of(await loaders(info).existing_run(runID))

    @strawberry.field
    async def runTrace(self, info: GqlInfo, runID: str) -> RunTraceSpan:
        return await run_trace(info, await loaders(info).existing_run(runID))

    @strawberry.field
    async def runTrigger(self, info: GqlInfo, runID: str) -> RunTraceTrigger:
        return await run_trigger(info, await loaders(info).existing_run(runID))

    @strawberry.field
    async def runTraceSpanOutputByID(self, info: GqlInfo, outputID: str) -> RunTraceSpanOutput:
        parsed = parse_output_id(outputID)
        if parsed is None or not is_ulid(parsed[0]):
            raise BadRequest(f"invalid output ID: {outputID!r}")
        run_id, key = parsed
        output = fold_trace(await loaders(info).history(run_id)).outputs.get(key)
        if output is None:
            raise NotFound(f"no output {outputID!r} in run {run_id}")
        return make_output(output)
