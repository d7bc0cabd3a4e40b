"""Connection pool and JSON adaptation shared by every Postgres repository module.

Hot-path statements are executed with ``prepare=True``: psycopg otherwise prepares a statement
only after five executions on the same connection, and with a pool of connections and a few
variants of each statement most executions were parsed and planned again (``bench/pgproxy.py``
counted 598 Parse messages for 613 Binds in the engine benchmark; 36 for 304 once prepared).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from app.store.urls import libpq_url

AsyncConn = psycopg.AsyncConnection[Any]


def configure_json() -> None:
    # msgspec's JSON codec: the same JSON as the stdlib's, several times faster, on a path
    # every history row, memo and queue payload goes through.
    set_json_dumps(msgspec.json.encode)
    set_json_loads(msgspec.json.decode)


async def open_pool(
    url: str, *, min_size: int = 2, max_size: int = 16, name: str = "stepwell"
) -> AsyncConnectionPool[AsyncConn]:
    configure_json()
    pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
        libpq_url(url),
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        kwargs={"autocommit": True},
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def connect(url: str, *, autocommit: bool = True) -> AsyncConn:
    configure_json()
    return await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=autocommit)


class LazyConnection:
    """A connection taken from the pool on first use only — for hot paths whose reads are
    usually served from in-memory caches — or wrapping one the caller already holds.

    ``key`` names the database, for caches that must not mix databases (tests use many).
    """

    def __init__(
        self, pool: AsyncConnectionPool[AsyncConn] | None, conn: AsyncConn | None = None
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._held: contextlib.AbstractAsyncContextManager[AsyncConn] | None = None

    @classmethod
    def wrap(cls, conn: AsyncConn) -> LazyConnection:
        return cls(None, conn)

    @property
    def key(self) -> str:
        if self._pool is not None:
            conninfo = self._pool.conninfo
            return conninfo if isinstance(conninfo, str) else f"pool {id(self._pool)}"
        assert self._conn is not None
        info = self._conn.info
        return f"host={info.host} port={info.port} dbname={info.dbname}"

    async def get(self) -> AsyncConn:
        if self._conn is None:
            assert self._pool is not None
            self._held = self._pool.connection()
            self._conn = await self._held.__aenter__()
        return self._conn

    async def __aenter__(self) -> LazyConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._held is not None:
            held, self._held, self._conn = self._held, None, None
            await held.__aexit__(None, None, None)
