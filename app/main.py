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
from typing import Any

import httpx
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from psycopg_pool import AsyncConnectionPool

from app.clock import SystemClock
from app.engine.handlers import build_handlers
from app.engine.worker import Worker
from app.http.errors import handle_exception
from app.http.health import health
from app.settings import Settings
from app.store.db import AsyncConn, open_pool
from app.store.notify import listen
from domain.ports import Clock

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a request handler or queue handler may need, built once per process."""

    settings: Settings
    database_url: str
    clock: Clock
    pool: AsyncConnectionPool[AsyncConn] | None = None
    #: The one outbound HTTP client (SDK calls, sync PUTs); see ``app/drivers/http.py``.
    http: httpx.AsyncClient | None = None
    worker: Worker | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _listener: asyncio.Task[None] | None = None
    _worker_task: asyncio.Task[None] | None = None

    @property
    def db(self) -> AsyncConnectionPool[AsyncConn]:
        assert self.pool is not None, "services not started"
        return self.pool

    async def start(self) -> None:
        s = self.settings
        self.pool = await open_pool(self.database_url, max_size=max(8, s.workers // 2 + 4))
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=10, read=7200, write=60, pool=60),
            limits=httpx.Limits(
                max_connections=max(64, s.workers * 2), max_keepalive_connections=max(32, s.workers)
            ),
            follow_redirects=False,
        )
        if s.run_workers:
            self.worker = Worker(
                self.pool,
                build_handlers(self),
                self.clock,
                capacity=s.workers,
                lease_ms=int(s.lease_seconds * 1000),
                poll_interval=s.queue_poll_interval,
            )
            self._listener = asyncio.create_task(
                listen(self.database_url, self.worker.wake, self.stop)
            )
            self._worker_task = asyncio.create_task(self.worker.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        if self._worker_task is not None:
            # In-flight items get a grace period; whatever is left falls back to its lease.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._worker_task, timeout=10)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self.http is not None:
            await self.http.aclose()
        if self.pool is not None:
            await self.pool.close()


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

    async def add_server_kind(response: Response[Any]) -> Response[Any]:
        response.headers["X-Inngest-Server-Kind"] = kind
        return response

    return Litestar(
        route_handlers=[health],
        state=State({"services": services}),
        lifespan=[lifespan],
        after_request=add_server_kind,
        exception_handlers={Exception: handle_exception},
        openapi_config=OpenAPIConfig(title="Stepwell", version="0.1.0", path="/openapi"),
        debug=False,
    )


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services
