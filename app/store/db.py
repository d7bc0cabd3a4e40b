"""Connection pool and JSON adaptation shared by every Postgres repository module."""

from __future__ import annotations

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
