"""Per-request GraphQL context: the request's scope, its memoised reads, and its CEL filter.

A query that lists 40 runs and asks each for its ``function { name }`` must not load the same
function 40 times, so reads go through ``Loaders``, which remembers what one request already
read (never across requests: a run's status changes between polls).  Every read goes through
the request's one read connection (``RequestScope.reads``), and every background load is a
task the scope owns, so that nothing a request started outlives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from strawberry.types import Info

from app.graphql.cel_filter import CelFilter
from app.graphql.errors import BadRequest, ClientError, NotFound
from app.graphql.scope import RequestScope, SharedConnection
from app.registry import store as registry
from app.store import read_queries as rq
from app.store.history import load_history
from app.store.runs_view import load_run_row
from domain.history import HistoryEvent
from domain.ids import is_ulid
from projections.runs import RunRow

if TYPE_CHECKING:
    from app.main import Services

__all__ = ["BadRequest", "ClientError", "GqlInfo", "Loaders", "NotFound", "loaders"]

GqlInfo = Info[dict[str, Any], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaders:
    scope: RequestScope
    cel: CelFilter
    _memo: dict[tuple[str, str], asyncio.Future[Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, scope: RequestScope) -> Loaders:
        return cls(scope=scope, cel=CelFilter(deadline=scope.deadline))

    @property
    def services(self) -> Services:
        return self.scope.services

    @property
    def reads(self) -> SharedConnection:
        """The request's read connection (GraphQL queries)."""
        return self.scope.reads

    @property
    def writes(self) -> SharedConnection:
        """The request's ingest connection (mutations)."""
        return self.scope.writes

    async def _once(self, kind: str, key: str, load: Callable[[], Coroutine[Any, Any, T]]) -> T:
        # The in-flight read is what is remembered: the 40 nodes of a page resolve their
        # ``function`` concurrently, and must share one query, not race to issue 40.  Shielded:
        # one waiter being cancelled (a failing sibling field) must not cancel the others' read.
        pending: asyncio.Future[T] | None = self._memo.get((kind, key))
        if pending is None:
            pending = self._memo[(kind, key)] = self.scope.spawn(load())
        return await asyncio.shield(pending)

    async def function(self, function_id: str) -> registry.FunctionRecord | None:
        """The function by id or slug, archived ones included (old runs still name them)."""

        async def load() -> dict[str, registry.FunctionRecord]:
            # One read of the (small) registry serves every run of a page, whatever its
            # function, instead of one query per distinct function.
            async with self.reads.connection() as conn:
                records = await registry.list_functions(conn, include_archived=True)
            by_key = {r.slug: r for r in records}
            by_key.update((r.id, r) for r in records)
            return by_key

        return (await self._once("functions", "", load)).get(function_id)

    async def app(self, app_id: str) -> registry.AppRecord | None:
        async def load() -> registry.AppRecord | None:
            async with self.reads.connection() as conn:
                return await registry.app_by_id(conn, app_id)

        return await self._once("app", app_id, load)

    async def history(self, run_id: str) -> list[HistoryEvent]:
        async def load() -> list[HistoryEvent]:
            async with self.reads.connection() as conn:
                return await load_history(conn, run_id)

        return await self._once("history", run_id, load)

    async def run_row(self, run_id: str) -> RunRow | None:
        async def load() -> RunRow | None:
            async with self.reads.connection() as conn:
                return await load_run_row(conn, run_id)

        return await self._once("run", run_id, load)

    async def event(self, internal_id: str) -> rq.EventRecord | None:
        async def load() -> rq.EventRecord | None:
            async with self.reads.connection() as conn:
                return await rq.event_by_internal_id(conn, internal_id)

        return await self._once("event", internal_id, load)

    async def events(self, internal_ids: tuple[str, ...]) -> list[rq.EventRecord]:
        async def load() -> list[rq.EventRecord]:
            async with self.reads.connection() as conn:
                return await rq.events_by_ids(conn, internal_ids)

        return await self._once("events", ",".join(internal_ids), load)

    async def runs_of_event(self, internal_id: str) -> list[RunRow]:
        async def load() -> list[RunRow]:
            async with self.reads.connection() as conn:
                return await rq.runs_for_events(conn, [internal_id])

        return await self._once("event-runs", internal_id, load)

    def prime_runs_of_events(self, event_ids: list[str], rows: list[RunRow]) -> None:
        """Remember the runs of several events read in one query (the stream does this)."""
        for event_id in event_ids:
            done: asyncio.Future[list[RunRow]] = asyncio.get_running_loop().create_future()
            done.set_result([r for r in rows if event_id in r.event_ids])
            self._memo[("event-runs", event_id)] = done

    async def existing_run(self, run_id: str) -> RunRow:
        """The run's view row; ``BadRequest``/``NotFound`` for a bad or unknown id."""
        if not is_ulid(run_id):
            raise BadRequest(f"invalid run ID: {run_id!r} is not a ULID")
        row = await self.run_row(run_id)
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return row


def loaders(info: GqlInfo) -> Loaders:
    found: Loaders = info.context["loaders"]
    return found
