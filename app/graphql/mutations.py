"""The ``Mutation`` root: app management, invoking a function, cancelling and rerunning runs.

Each resolver parses its arguments and calls one service: ``sync_url`` for apps, the event
store for ``invokeFunction`` (an ``inngest/function.invoked`` event routed by
``data._inngest.fn_id``, exactly what ``POST /invoke`` stores), ``run_command(CancelRun)`` for
``cancelRun`` (idempotent for a cancelled run; an otherwise ended run is an error) and
``app.graphql.rerun`` for ``rerun``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from app.engine.transitions import run_command
from app.graphql.context import BadRequest, GqlInfo, NotFound, loaders
from app.graphql.inputs import CreateAppInput, RerunFromStepInput, UpdateAppInput
from app.graphql.legacy_types import FunctionRun
from app.graphql.registry_types import App, make_app
from app.graphql.rerun import rerun
from app.graphql.scalars import ULID, Map
from app.registry import store as registry
from app.registry.sync import sync_url
from app.store.events import insert_events, received
from app.store.runs_view import load_run_row
from domain import commands as c
from domain.errors import InvalidEvent
from domain.events import invocation_event
from domain.ids import new_ulid
from domain.run import RunStatus

UPDATE_APP_URL = "UPDATE apps SET url = %s, updated_at = %s WHERE id = %s"


def _with_scheme(url: str) -> str:
    # As upstream: an address typed without a scheme is a local http app.
    return url if "://" in url else f"http://{url}"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def createApp(self, info: GqlInfo, input: CreateAppInput) -> App:
        ld = loaders(info)
        url = _with_scheme(input.url.strip())
        # The sync records its outcome through its own (ingest) connection; what it recorded
        # is read back through the read one, so the request never holds two ingest connections.
        outcome = await sync_url(ld.services, url)
        if outcome.error is not None:
            raise BadRequest(outcome.error)
        async with ld.reads.connection() as conn:
            apps = await registry.list_apps(conn)
        found = [a for a in apps if a.url == url or a.id == outcome.app_id]
        if not found:
            raise BadRequest(f"the app at {url} synced but registered under another URL")
        return make_app(found[0])

    @strawberry.mutation
    async def updateApp(self, info: GqlInfo, input: UpdateAppInput) -> App:
        ld = loaders(info)
        now = datetime.fromtimestamp(ld.services.clock.now_ms() / 1000, UTC)
        async with ld.writes.connection() as conn:
            cur = await conn.execute(UPDATE_APP_URL, (_with_scheme(input.url), now, input.id))
            record = await registry.app_by_id(conn, input.id) if cur.rowcount else None
        if record is None:
            raise NotFound(f"app {input.id} not found")
        return make_app(record)

    @strawberry.mutation
    async def deleteApp(self, info: GqlInfo, id: str) -> str:
        async with loaders(info).writes.connection() as conn:
            await registry.delete_app(conn, id)
        return id

    @strawberry.mutation
    async def deleteAppByName(self, info: GqlInfo, name: str) -> bool:
        async with loaders(info).writes.connection() as conn:
            record = await registry.app_by_name(conn, name)
            return record is not None and await registry.delete_app(conn, record.id)

    @strawberry.mutation
    async def invokeFunction(
        self,
        info: GqlInfo,
        *,
        functionSlug: str,
        data: Map | None = None,
        user: Map | None = None,
        meta: Map | None = None,
        debugSessionID: ULID | None = None,
        debugRunID: ULID | None = None,
    ) -> bool | None:
        ld = loaders(info)
        now = ld.services.clock.now_ms()
        async with ld.writes.connection() as conn:
            fn = await registry.function_by_slug_or_id(conn, functionSlug)
            if fn is None:
                raise NotFound(f"function not found: {functionSlug}")
            try:
                event = invocation_event({"data": data or {}, "user": user or {}}, fn.slug, now)
            except InvalidEvent as exc:
                raise BadRequest(f"invalid invocation: {exc.message}") from None
            async with conn.transaction():
                await insert_events(conn, [(new_ulid(), event)], received(now), now)
        return True

    @strawberry.mutation
    async def cancelRun(self, info: GqlInfo, runID: ULID) -> FunctionRun:
        ld = loaders(info)
        row = await ld.existing_run(runID)
        if row.status != RunStatus.CANCELLED.value:
            if row.ended_at is not None:
                raise BadRequest("cannot cancel an ended run")
            await run_command(ld.services, runID, c.CancelRun(reason="cancelled via GraphQL"))
            async with ld.writes.connection() as conn:
                row = await load_run_row(conn, runID) or row
            if row.status != RunStatus.CANCELLED.value:
                raise BadRequest("cannot cancel an ended run")  # it ended meanwhile
        return FunctionRun.of(row)

    @strawberry.mutation
    async def rerun(
        self,
        info: GqlInfo,
        *,
        runID: ULID,
        fromStep: RerunFromStepInput | None = None,
        debugSessionID: ULID | None = None,
        debugRunID: ULID | None = None,
    ) -> ULID:
        step, step_input = (fromStep.stepID, fromStep.input) if fromStep else (None, None)
        ld = loaders(info)
        return ULID(await rerun(ld.services, runID, step, step_input, db=ld.writes))
