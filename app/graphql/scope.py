"""What one GraphQL request holds, and the guarantee that it gives all of it back.

A request reads through at most one connection of the read pool and writes through at most one
of the ingest pool (``SharedConnection``): each is checked out on first use, lent to one
resolver at a time (resolvers run concurrently, a connection runs one statement at a time),
and kept until the request ends, so that a document with many fields cannot take a pool's
every connection.  Work a request starts in the background (``spawn``) is owned by its
``RequestScope``; ``close`` cancels and awaits whatever is still running, then returns the
connections, whether the request succeeded, failed, timed out or its client went away.  The
event loop holds tasks only weakly, so an unowned task holding a checkout could be collected
mid-flight and its connection never returned: owning them is what makes ``close`` complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests

from app.store.db import AsyncConn

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds ``close`` waits for cancelled work to unwind (a statement being cancelled in the
#: server) before it returns the connections anyway; the pool discards a connection returned
#: mid-statement, so a straggler cannot corrupt the next user's session.
UNWIND_SECONDS = 5.0


class Connections(Protocol):
    """Anything that lends connections: a pool, or a request's ``SharedConnection``."""

    def connection(self) -> AbstractAsyncContextManager[AsyncConn]: ...


class RequestEnded(RuntimeError):
    """Work of a request that has already ended tried to use its connections."""


class SharedConnection:
    """At most one connection of ``pool`` for one request, lent to one caller at a time."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self._pool = pool
        self._lock = asyncio.Lock()
        self._conn: AsyncConn | None = None
        self._holder: asyncio.Task[Any] | None = None
        self._closed = False
        # A pool that had no connection for this request will not have one for its next
        # resolver either: fail those fast instead of making each wait out the pool timeout.
        self._unavailable: PoolTimeout | TooManyRequests | None = None

    @property
    def checked_out(self) -> bool:
        return self._conn is not None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        async with self._lock:
            if self._closed:
                raise RequestEnded("the request has ended")
            if self._unavailable is not None:
                raise type(self._unavailable)(str(self._unavailable))
            if self._conn is None:
                try:
                    self._conn = await self._pool.getconn()
                except (PoolTimeout, TooManyRequests) as exc:
                    self._unavailable = exc
                    raise
            self._holder = asyncio.current_task()
            try:
                yield self._conn
            finally:
                self._holder = None

    async def release(self) -> None:
        """Return the connection (once no caller uses it); later callers get ``RequestEnded``."""
        self._closed = True
        holder = self._holder
        if holder is not None and holder is not asyncio.current_task():
            holder.cancel()
        acquired = False
        try:
            async with asyncio.timeout(UNWIND_SECONDS):
                await self._lock.acquire()
                acquired = True
        except TimeoutError:
            log.warning("a GraphQL resolver did not give its connection back; returning it")
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                await self._pool.putconn(conn)
        finally:
            if acquired:
                self._lock.release()


class RequestScope:
    """The connections, background tasks and deadline of one GraphQL request."""

    def __init__(self, services: Services, *, seconds: float) -> None:
        self.services = services
        self.deadline = time.monotonic() + seconds
        self.reads = SharedConnection(services.read_db)
        self.writes = SharedConnection(services.ingest_db)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` as a task this request owns (``close`` cancels it if still running)."""
        if self._closed:
            work.close()
            raise RequestEnded("the request has ended")
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        return task

    async def close(self) -> None:
        """Cancel and await the request's unfinished work, then return its connections.

        Runs to the end even if the caller is cancelled meanwhile (a client that goes away
        while the request is closing must not leave a connection checked out).
        """
        self._closed = True
        closing = asyncio.ensure_future(self._close())
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)
        await asyncio.shield(closing)

    async def _close(self) -> None:
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if self._tasks:
            # Awaiting every task also retrieves the exceptions of those that failed.
            done, stuck = await asyncio.wait(self._tasks, timeout=UNWIND_SECONDS)
            for task in done:
                if not task.cancelled():
                    task.exception()
            if stuck:
                log.warning("%d GraphQL resolver tasks did not stop within %s s",
                            len(stuck), UNWIND_SECONDS)  # fmt: skip
        try:
            await self.reads.release()
        finally:
            await self.writes.release()


# Closings in progress: the event loop holds tasks weakly, and a closing must not be collected
# while its request's caller has already gone.
_closing: set[asyncio.Task[None]] = set()
