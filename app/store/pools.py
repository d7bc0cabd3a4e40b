"""The connection budgets of one process: separate pools so that no kind of work starves another.

* ``engine`` — queue claims and run transitions (the workers' hot path).
* ``leases`` — one connection that only extends leases, so that a worker whose engine pool is
  saturated (or whose handlers are slow) still keeps what it holds.
* ``ingest`` — writes clients make: ``POST /e``, ``/invoke``, sync, cancellations, mutations.
* ``reads`` — GraphQL queries, REST reads and the dev UI, each read bounded by a statement
  timeout so that an expensive query gives up its connection instead of holding it.

A request waits at most ``wait_seconds`` for a connection of its pool, then fails with
``PoolTimeout`` (answered 503 with ``Retry-After``).  Every pool discards broken connections:
``ingest`` and ``reads`` check each connection as it is handed out (one empty query), the
engine only connections idle for a while (a hot connection has just proved itself, and the hot
path retries a failed transition anyway).  ``idle_in_transaction_session_timeout`` makes
Postgres end a transaction whose owner vanished, so that its locks cannot outlive it.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.store.db import AsyncConn, configure_json
from app.store.urls import libpq_url

#: An engine connection idle longer than this is checked before use.
IDLE_CHECK_SECONDS = 2.0
#: Postgres ends a transaction left open and idle this long (its client is gone or stuck).
IDLE_IN_TRANSACTION_MS = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSizes:
    """How many connections each budget may open, and how long a caller waits for one."""

    engine: int = 10
    ingest: int = 6
    reads: int = 4
    #: Seconds a request waits for a connection before it is answered 503.
    wait_seconds: float = 5.0
    #: Statement timeout of read connections, in milliseconds.
    read_statement_timeout_ms: int = 15_000
    #: Whether this process serves HTTP; a ``stepwell worker`` keeps no idle client connections.
    serves_http: bool = True


@dataclass(frozen=True, slots=True)
class Pools:
    engine: AsyncConnectionPool[AsyncConn]
    leases: AsyncConnectionPool[AsyncConn]
    ingest: AsyncConnectionPool[AsyncConn]
    reads: AsyncConnectionPool[AsyncConn]

    def all(self) -> tuple[AsyncConnectionPool[AsyncConn], ...]:
        return (self.engine, self.leases, self.ingest, self.reads)

    async def close(self) -> None:
        for pool in self.all():
            await pool.close()


class _IdleCheck:
    """A pool ``check`` that pings only connections not handed out recently.

    It remembers when it last let each connection out (a ``reset`` hook would know when it came
    back, but psycopg_pool then returns connections through its background workers, which ties
    the pool to the event loop that opened it).
    """

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._out: weakref.WeakKeyDictionary[AsyncConn, float] = weakref.WeakKeyDictionary()

    async def check(self, conn: AsyncConn) -> None:
        now = time.monotonic()
        last = self._out.get(conn)
        if last is None or now - last > self.idle_seconds:
            await AsyncConnectionPool.check_connection(conn)
        self._out[conn] = now


def _options(**settings: int) -> str:
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


async def _open(
    url: str,
    *,
    name: str,
    min_size: int,
    max_size: int,
    wait: float,
    always_check: bool = False,
    **server_settings: int,
) -> AsyncConnectionPool[AsyncConn]:
    kwargs: dict[str, Any] = {"autocommit": True}
    server_settings.setdefault("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_MS)
    kwargs["options"] = _options(**server_settings)
    idle = _IdleCheck(IDLE_CHECK_SECONDS)
    pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
        libpq_url(url),
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        kwargs=kwargs,
        timeout=wait,
        check=AsyncConnectionPool.check_connection if always_check else idle.check,
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def open_pools(url: str, sizes: PoolSizes) -> Pools:
    """Open every pool (the engine's first, so a dead database fails fast)."""
    configure_json()
    client_min = int(sizes.serves_http)
    specs: list[dict[str, Any]] = [
        {"name": "engine", "min_size": 2, "max_size": sizes.engine, "wait": 30.0},
        {"name": "leases", "min_size": 1, "max_size": 1, "wait": 30.0, "always_check": True},
        {"name": "ingest", "min_size": client_min, "max_size": sizes.ingest,
         "wait": sizes.wait_seconds, "always_check": True},
        {"name": "reads", "min_size": client_min, "max_size": sizes.reads,
         "wait": sizes.wait_seconds, "always_check": True,
         "statement_timeout": sizes.read_statement_timeout_ms},
    ]  # fmt: skip
    opened: list[AsyncConnectionPool[AsyncConn]] = []
    try:
        for spec in specs:
            opened.append(await _open(url, **spec))
    except BaseException:
        for pool in opened:
            with contextlib.suppress(Exception):
                await pool.close()
        raise
    engine, leases, ingest, reads = opened
    return Pools(engine=engine, leases=leases, ingest=ingest, reads=reads)
