"""Connection pool and JSON adaptation shared by every Postgres repository module."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from app.store.urls import libpq_url

AsyncConn = psycopg.AsyncConnection[Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def configure_json() -> None:
    set_json_dumps(_dumps)
    set_json_loads(json.loads)


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
