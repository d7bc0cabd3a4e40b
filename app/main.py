"""The composition root: ``create_app(settings)`` builds every service; nothing runs at import.

The Litestar app owns the lifecycle: on startup it opens the connection pool and (unless this
process only serves HTTP) starts the queue worker and its NOTIFY listener; on shutdown it stops
them and waits for in-flight items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import httpx
from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders, State
from litestar.types import Message, Scope
from psycopg_pool import AsyncConnectionPool

from app.clock import SystemClock
from app.drivers import gateway
from app.drivers import http as driver
from app.engine.crons import run_cron_loop
from app.engine.handlers import build_handlers
from app.engine.run_cache import RunCache
from app.engine.worker import Worker
from app.graphql import ROUTES as graphql_routes
from app.http import apps as apps_http
from app.http import cancellations as cancellations_http
from app.http import dead_letters as dead_letters_http
from app.http import dev as dev_http
from app.http import events, rest_events, runs
from app.http import metadata as metadata_http
from app.http import register as register_http
from app.http import signals as signals_http
from app.http.errors import handle_exception
from app.http.health import health
from app.http.openapi import openapi_config
from app.registry.cache import FunctionCache, TriggerIndex
from app.registry.discovery import run_sync_loop
from app.settings import Settings
from app.store.db import AsyncConn
from app.store.maintenance import vacuum_queue_if_needed
from app.store.notify import listen
from app.store.pools import Pools, PoolSizes, open_pools
from app.store.stats import run_stats_tailer
from app.ui import routes as ui_routes
from domain.ports import Clock

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a request handler or queue handler may need, built once per process."""

    settings: Settings
    database_url: str
    clock: Clock
    #: The connection budgets (see ``app/store/pools.py``).
    pools: Pools | None = None
    #: Control-plane HTTP (sync PUTs, discovery probes).
    http: httpx.AsyncClient | None = None
    #: The client for SDK calls, the hot path; see ``app/drivers/http.py``.
    calls: aiohttp.ClientSession | None = None
    #: The client for requests made on a run's behalf (``step.fetch``, ``step.ai.infer``).
    gateway: httpx.AsyncClient | None = None
    worker: Worker | None = None
    functions: FunctionCache = field(default_factory=FunctionCache)
    #: Which functions an event name triggers (see ``app/registry/cache.py``).
    triggers: TriggerIndex = field(default_factory=TriggerIndex)
    #: Snapshots of the runs this process works on (see ``app/engine/run_cache.py``).
    runs: RunCache = field(default_factory=RunCache)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: Large ``POST /e`` bodies parsed and stored at once (see ``app/http/events.py``).
    large_ingests: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(events.LARGE_BODIES_AT_ONCE)
    )
    _listener: asyncio.Task[None] | None = None
    _sync_task: asyncio.Task[None] | None = None
    #: Loops that stop by themselves when ``stop`` is set (crons, projection tailers).
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _worker_task: asyncio.Task[None] | None = None

    @property
    def server_kind(self) -> str:
        return server_kind(self.settings)

    @property
    def client(self) -> aiohttp.ClientSession:
        assert self.calls is not None, "services not started"
        return self.calls

    @property
    def outbound(self) -> httpx.AsyncClient:
        assert self.gateway is not None, "services not started"
        return self.gateway

    @property
    def db(self) -> AsyncConnectionPool[AsyncConn]:
        """The engine's pool: queue claims and run transitions."""
        assert self.pools is not None, "services not started"
        return self.pools.engine

    @property
    def ingest_db(self) -> AsyncConnectionPool[AsyncConn]:
        """Writes clients make (events, sync, cancellations, mutations)."""
        assert self.pools is not None, "services not started"
        return self.pools.ingest

    @property
    def read_db(self) -> AsyncConnectionPool[AsyncConn]:
        """Reads clients make (GraphQL queries, REST reads, the UI), statement-time bounded."""
        assert self.pools is not None, "services not started"
        return self.pools.reads

    async def start(self) -> None:
        s = self.settings
        self.pools = await open_pools(self.database_url, pool_sizes(s))
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30), follow_redirects=False)
        self.calls = driver.new_session(
            call_timeout=s.call_timeout, max_connections=max(64, s.workers * 2)
        )
        self.gateway = gateway.new_client(read_timeout=s.call_timeout)
        if s.run_workers and s.workers > 0:
            self.worker = Worker(
                self.pools.engine,
                build_handlers(self),
                self.clock,
                capacity=s.workers,
                lease_ms=int(s.lease_seconds * 1000),
                poll_interval=s.queue_poll_interval,
                lease_pool=self.pools.leases,
            )
            self._listener = asyncio.create_task(
                listen(self.database_url, self.worker.wake, self.stop)
            )
            self._worker_task = asyncio.create_task(self.worker.run(self.stop))
        if s.run_workers:
            self._background.append(asyncio.create_task(run_cron_loop(self)))
            self._background.append(asyncio.create_task(run_stats_tailer(self)))
            self._background.append(asyncio.create_task(vacuum_queue_if_needed(self)))
        if s.mode != "worker" and s.run_workers:
            self._sync_task = asyncio.create_task(run_sync_loop(self))

    async def close(self) -> None:
        self.stop.set()
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self._worker_task is not None:
            # In-flight items get a grace period; whatever is left falls back to its lease.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._worker_task, timeout=10)
        if self._background:
            await asyncio.wait(self._background, timeout=10)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self.http is not None:
            await self.http.aclose()
        if self.calls is not None:
            await self.calls.close()
        if self.gateway is not None:
            await self.gateway.aclose()
        if self.pools is not None:
            await self.pools.close()


def pool_sizes(s: Settings) -> PoolSizes:
    # Few engine connections for many worker slots: a step holds one only for its one-statement
    # commit, and fewer Postgres backends contend less (engine benchmark, 32 slots: pools of 10
    # vs 20 connections gave ~15% more steps/s and ~15% less Postgres CPU per step; 36 was
    # worse still).  Workers that find the pool busy wait, they do not fail.
    engine = s.engine_connections or max(8, s.workers // 4 + 2)
    return PoolSizes(
        engine=engine,
        ingest=s.ingest_connections,
        reads=s.read_connections,
        wait_seconds=s.pool_wait_seconds,
        read_statement_timeout_ms=int(s.read_timeout_seconds * 1000),
        serves_http=s.mode != "worker",
    )


def server_kind(settings: Settings) -> str:
    return "cloud" if settings.is_self_hosted else "dev"


def create_app(settings: Settings, database_url: str, clock: Clock | None = None) -> Litestar:
    services = Services(settings=settings, database_url=database_url, clock=clock or SystemClock())
    kind = server_kind(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.close()

    async def add_server_kind(message: Message, scope: Scope) -> None:
        # A before_send hook rather than after_request: Litestar shares handler objects
        # between app instances, so an after_request closure would leak across apps.
        if message["type"] == "http.response.start":
            MutableScopeHeaders.from_message(message)["X-Inngest-Server-Kind"] = kind

    return Litestar(
        route_handlers=[
            health,
            *runs.ROUTES,
            *events.ROUTES,
            *register_http.ROUTES,
            *dev_http.ROUTES,
            *apps_http.ROUTES,
            *rest_events.ROUTES,
            *cancellations_http.ROUTES,
            *metadata_http.ROUTES,
            *dead_letters_http.ROUTES,
            *signals_http.ROUTES,
            *graphql_routes,
            *ui_routes(),
        ],
        state=State({"services": services}),
        lifespan=[lifespan],
        before_send=[add_server_kind],
        exception_handlers={Exception: handle_exception},
        openapi_config=openapi_config(),
        debug=False,
    )
