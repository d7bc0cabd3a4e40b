"""The first-generation GraphQL types still used by SDK test suites and tools: ``Event``,
``FunctionRun`` and ``StreamItem``, built from event records and runs-view rows.

``Event.payload`` is the JSON text of the event's ``data`` and ``raw`` that of the whole event;
``Event.functionRuns`` lists the runs the event started (empty until they are scheduled, which
is how clients poll for them); ``FunctionRun.output`` is the JSON text of the run's return
value, or of its error when it failed.
"""

from __future__ import annotations

from datetime import UTC
from enum import Enum

import strawberry

from app.graphql.context import GqlInfo, loaders
from app.graphql.registry_types import Function, make_function
from app.graphql.scalars import ULID, Time, json_text, ms_time, time_of
from app.store.read_queries import EventRecord
from domain.ids import ENV_ID, ulid_ms
from domain.run import RunStatus
from projections.runs import RunRow


@strawberry.enum
class FunctionRunStatus(Enum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RUNNING = "RUNNING"
    QUEUED = "QUEUED"
    SKIPPED = "SKIPPED"


def run_status(row: RunRow) -> FunctionRunStatus:
    return FunctionRunStatus[RunStatus(row.status).name]


def run_output(row: RunRow) -> str | None:
    """JSON text of what the run ended with; an ended run that returned nothing gives ``null``."""
    if row.ended_at is None or row.status == RunStatus.CANCELLED.value:
        return None
    return json_text(row.output)


@strawberry.type
class Workspace:
    id: strawberry.ID


WORKSPACE = Workspace(id=strawberry.ID(ENV_ID))


@strawberry.enum
class EventStatus(Enum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    PAUSED = "PAUSED"
    FAILED = "FAILED"
    PARTIALLY_FAILED = "PARTIALLY_FAILED"
    NO_FUNCTIONS = "NO_FUNCTIONS"


@strawberry.type
class Event:
    record: strawberry.Private[EventRecord]
    id: ULID
    externalID: str | None
    workspace: Workspace | None
    name: str | None
    createdAt: Time | None
    payload: str | None
    schema: str | None
    raw: str | None

    async def _runs(self, info: GqlInfo) -> list[RunRow]:
        return await loaders(info).runs_of_event(self.record.internal_id)

    @strawberry.field
    async def functionRuns(self, info: GqlInfo) -> list[FunctionRun] | None:
        return [FunctionRun.of(r) for r in await self._runs(info)]

    @strawberry.field
    async def totalRuns(self, info: GqlInfo) -> int | None:
        return len(await self._runs(info))

    @strawberry.field
    async def pendingRuns(self, info: GqlInfo) -> int | None:
        runs = await self._runs(info)
        return sum(1 for r in runs if r.status == RunStatus.RUNNING.value)

    @strawberry.field
    async def status(self, info: GqlInfo) -> EventStatus | None:
        statuses = [r.status for r in await self._runs(info)]
        if not statuses:
            return EventStatus.NO_FUNCTIONS
        failed = statuses.count(RunStatus.FAILED.value)
        if failed:
            return EventStatus.FAILED if failed == len(statuses) else EventStatus.PARTIALLY_FAILED
        if RunStatus.RUNNING.value in statuses:
            return EventStatus.RUNNING
        return EventStatus.COMPLETED

    @classmethod
    def of(cls, r: EventRecord) -> Event:
        created = r.ts or ulid_ms(r.internal_id)
        return cls(
            record=r, id=ULID(r.internal_id), externalID=r.id or None, workspace=WORKSPACE,
            name=r.name, createdAt=ms_time(created), payload=json_text(r.data), schema=None,
            raw=json_text(r.as_event()),
        )  # fmt: skip


@strawberry.type
class StepEventWait:
    eventName: str | None
    expression: str | None
    expiryTime: Time


@strawberry.type
class FunctionRun:
    row: strawberry.Private[RunRow]
    id: strawberry.ID
    functionID: str
    workspace: Workspace | None
    batchID: ULID | None
    batchCreatedAt: Time | None
    status: FunctionRunStatus | None
    waitingFor: StepEventWait | None
    pendingSteps: int | None = strawberry.field(deprecation_reason="always 0 on Stepwell")
    startedAt: Time | None
    finishedAt: Time | None
    output: str | None
    eventID: strawberry.ID
    cron: str | None

    @strawberry.field
    async def function(self, info: GqlInfo) -> Function | None:
        record = await loaders(info).function(self.row.function_id)
        return None if record is None else make_function(record)

    @strawberry.field
    async def event(self, info: GqlInfo) -> Event | None:
        if not self.row.event_ids:
            return None
        record = await loaders(info).event(self.row.event_ids[0])
        return None if record is None else Event.of(record)

    @strawberry.field
    async def events(self, info: GqlInfo) -> list[Event]:
        return [Event.of(r) for r in await loaders(info).events(self.row.event_ids)]

    @classmethod
    def of(cls, row: RunRow) -> FunctionRun:
        return cls(
            row=row, id=strawberry.ID(row.run_id), functionID=row.function_id,
            workspace=WORKSPACE, batchID=ULID(row.batch_id) if row.batch_id else None,
            batchCreatedAt=_ulid_time(row.batch_id), status=run_status(row), waitingFor=None,
            pendingSteps=0, startedAt=time_of(row.started_at or row.queued_at),
            finishedAt=time_of(row.ended_at), output=run_output(row),
            eventID=strawberry.ID(row.event_ids[0] if row.event_ids else ""), cron=row.cron,
        )  # fmt: skip


def _ulid_time(value: str | None) -> Time | None:
    return None if not value else ms_time(ulid_ms(value))


@strawberry.enum
class StreamType(Enum):
    EVENT = "EVENT"
    CRON = "CRON"


@strawberry.type
class StreamItem:
    id: strawberry.ID
    trigger: str
    type: StreamType
    createdAt: Time
    runs: list[FunctionRun | None] | None
    inBatch: bool


def stream_item(event: EventRecord, runs: list[RunRow]) -> StreamItem:
    cron = next((r.cron for r in runs if r.cron), None)
    created = event.ts or int(event.received_at.astimezone(UTC).timestamp() * 1000)
    return StreamItem(
        id=strawberry.ID(event.internal_id),
        trigger=cron or event.name,
        type=StreamType.CRON if cron else StreamType.EVENT,
        createdAt=ms_time(created),
        runs=[FunctionRun.of(r) for r in runs],
        inBatch=False,
    )
