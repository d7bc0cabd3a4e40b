"""GraphQL input types and the enums they use, named exactly as in Inngest's schema.

Clients declare variables with these names (``$filter: RunsFilterV2!``,
``$orderBy: [RunsV2OrderBy!]!``, ``$query: EventQuery!``), so the names are part of the API.
"""

from __future__ import annotations

from enum import Enum

import strawberry

from app.graphql.legacy_types import FunctionRunStatus
from app.graphql.registry_types import AppMethod
from app.graphql.scalars import UUID, Bytes, Time

LOCAL = strawberry.ID("local")


@strawberry.input
class AppsFilterV1:
    method: AppMethod | None = None


@strawberry.input
class EventQuery:
    workspaceId: strawberry.ID = LOCAL
    eventId: strawberry.ID


@strawberry.input
class EventsQuery:
    workspaceId: strawberry.ID = LOCAL
    lastEventId: strawberry.ID | None = None


@strawberry.input
class FunctionQuery:
    workspaceId: strawberry.ID = LOCAL
    functionSlug: str


@strawberry.input
class FunctionRunQuery:
    workspaceId: strawberry.ID = LOCAL
    functionRunId: strawberry.ID


@strawberry.input
class StreamQuery:
    after: strawberry.ID | None = None
    before: strawberry.ID | None = None
    limit: int = 20
    includeInternalEvents: bool | None = None


@strawberry.input
class EventsFilter:
    eventNames: list[str] | None = None
    # ``from`` is a Python keyword: the attribute is renamed, the GraphQL name is kept.
    from_: Time = strawberry.field(name="from")
    until: Time | None = None
    includeInternalEvents: bool = False
    query: str | None = None


@strawberry.enum
class RunsV2OrderByField(Enum):
    QUEUED_AT = "QUEUED_AT"
    STARTED_AT = "STARTED_AT"
    ENDED_AT = "ENDED_AT"


@strawberry.enum
class RunsOrderByDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.input
class RunsFilterV2:
    from_: Time = strawberry.field(name="from")
    until: Time | None = None
    timeField: RunsV2OrderByField | None = RunsV2OrderByField.QUEUED_AT
    status: list[FunctionRunStatus] | None = None
    functionIDs: list[UUID] | None = None
    appIDs: list[UUID] | None = None
    isDeferred: bool | None = None
    query: str | None = None


@strawberry.input
class RunsV2OrderBy:
    field: RunsV2OrderByField
    direction: RunsOrderByDirection


@strawberry.input
class CreateAppInput:
    url: str


@strawberry.input
class UpdateAppInput:
    id: str
    url: str


@strawberry.input
class RerunFromStepInput:
    stepID: str
    input: Bytes | None = None
