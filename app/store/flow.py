"""Repository for flow-control state: GCRA rows, debounces, batches, singleton locks.

Every read that feeds a decision locks its row (``FOR UPDATE``) inside the caller's
transaction, so two workers deciding for the same key take turns.  Rows that may not exist
yet are created with ``INSERT … ON CONFLICT DO NOTHING`` first: the loser of a creation race
waits for the winner's commit, then locks the row it made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from app.store.db import AsyncConn
from app.store.queue import to_dt

UPSERT_GCRA = """
INSERT INTO flow_gcra (key, tat, expires_at) VALUES (%s, %s, %s)
ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, expires_at = excluded.expires_at
"""
ENSURE_GCRA = """
INSERT INTO flow_gcra (key, tat, expires_at) VALUES (%s, 0, %s) ON CONFLICT (key) DO NOTHING
"""


async def lock_gcra(conn: AsyncConn, key: str, now_ms: int) -> int | None:
    """The key's TAT (None when idle or expired), locked until the transaction ends."""
    await conn.execute(ENSURE_GCRA, (key, to_dt(now_ms)))
    cur = await conn.execute(
        "SELECT tat, expires_at FROM flow_gcra WHERE key = %s FOR UPDATE", (key,)
    )
    row = await cur.fetchone()
    if row is None or row[1] <= to_dt(now_ms) or row[0] == 0:
        return None
    return int(row[0])


async def save_gcra(conn: AsyncConn, key: str, tat: int, expires_ms: int) -> None:
    await conn.execute(UPSERT_GCRA, (key, tat, to_dt(expires_ms)))


# --- debounce ------------------------------------------------------------------------------

CREATE_DEBOUNCE = """
INSERT INTO debounces (function_id, key, debounce_id, event, event_id, fire_at, timeout_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (function_id, key) DO NOTHING
RETURNING debounce_id
"""
LOCK_DEBOUNCE = """
SELECT debounce_id, event, event_id, fire_at, timeout_at
  FROM debounces WHERE function_id = %s AND key = %s FOR UPDATE
"""
UPDATE_DEBOUNCE = """
UPDATE debounces SET event = %s, event_id = %s, fire_at = %s WHERE debounce_id = %s
"""
LOCK_DEBOUNCE_BY_ID = """
SELECT function_id, event, event_id, fire_at FROM debounces WHERE debounce_id = %s FOR UPDATE
"""
DELETE_DEBOUNCE = "DELETE FROM debounces WHERE debounce_id = %s"
PUSH_ITEM = """
UPDATE queue_items SET available_at = %s WHERE job_id = %s AND lease_id IS NULL
"""


async def create_debounce(
    conn: AsyncConn,
    *,
    function_id: str,
    key: str,
    debounce_id: str,
    event: dict[str, Any],
    event_id: str,
    fire_at: datetime,
    timeout_at: datetime | None,
) -> bool:
    cur = await conn.execute(
        CREATE_DEBOUNCE,
        (function_id, key, debounce_id, Jsonb(event), event_id, fire_at, timeout_at),
    )
    return await cur.fetchone() is not None


async def lock_debounce(conn: AsyncConn, function_id: str, key: str) -> tuple[Any, ...] | None:
    cur = await conn.execute(LOCK_DEBOUNCE, (function_id, key))
    return await cur.fetchone()


async def update_debounce(
    conn: AsyncConn, debounce_id: str, event: dict[str, Any], event_id: str, fire_at: datetime
) -> None:
    await conn.execute(UPDATE_DEBOUNCE, (Jsonb(event), event_id, fire_at, debounce_id))


async def lock_debounce_by_id(conn: AsyncConn, debounce_id: str) -> tuple[Any, ...] | None:
    cur = await conn.execute(LOCK_DEBOUNCE_BY_ID, (debounce_id,))
    return await cur.fetchone()


async def delete_debounce(conn: AsyncConn, debounce_id: str) -> None:
    await conn.execute(DELETE_DEBOUNCE, (debounce_id,))


async def push_item(conn: AsyncConn, job_id: str, available_at: datetime) -> None:
    """Move a pending (unleased) item's due time; a leased one re-checks by itself."""
    await conn.execute(PUSH_ITEM, (available_at, job_id))


# --- batches -------------------------------------------------------------------------------

CREATE_BATCH = """
INSERT INTO batches (function_id, key, batch_id, created_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (function_id, key) DO NOTHING
RETURNING batch_id
"""
LOCK_BATCH = "SELECT batch_id FROM batches WHERE function_id = %s AND key = %s FOR UPDATE"
LOCK_BATCH_BY_ID = "SELECT function_id FROM batches WHERE batch_id = %s FOR UPDATE"
BATCH_EVENTS = "SELECT event_id, event FROM batch_events WHERE batch_id = %s ORDER BY seq"
CLOSE_BATCH = """
WITH gone AS (DELETE FROM batch_events WHERE batch_id = %s)
DELETE FROM batches WHERE batch_id = %s
"""


async def open_batch(
    conn: AsyncConn, function_id: str, key: str, batch_id: str, now: datetime
) -> tuple[str, bool]:
    """The (locked) open batch of this key, created if needed: (batch id, created)."""
    cur = await conn.execute(CREATE_BATCH, (function_id, key, batch_id, now))
    if await cur.fetchone() is not None:
        return batch_id, True
    cur = await conn.execute(LOCK_BATCH, (function_id, key))
    row = await cur.fetchone()
    assert row is not None, "an open batch vanished while its key was locked"
    return str(row[0]), False


async def append_batch_event(
    conn: AsyncConn, batch_id: str, event_id: str, event: dict[str, Any]
) -> int:
    """Add the event (once per event id); returns the batch size including it."""
    await conn.execute(
        "INSERT INTO batch_events (batch_id, event_id, event) VALUES (%s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (batch_id, event_id, Jsonb(event)),
    )
    cur = await conn.execute("SELECT count(*) FROM batch_events WHERE batch_id = %s", (batch_id,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def lock_batch_by_id(conn: AsyncConn, batch_id: str) -> str | None:
    cur = await conn.execute(LOCK_BATCH_BY_ID, (batch_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def batch_events(conn: AsyncConn, batch_id: str) -> list[tuple[str, dict[str, Any]]]:
    cur = await conn.execute(BATCH_EVENTS, (batch_id,))
    return [(str(r[0]), r[1]) for r in await cur.fetchall()]


async def close_batch(conn: AsyncConn, batch_id: str) -> None:
    await conn.execute(CLOSE_BATCH, (batch_id, batch_id))


# --- singleton -----------------------------------------------------------------------------

TAKE_SINGLETON = """
INSERT INTO singleton_locks (key, run_id) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING
RETURNING run_id
"""
SINGLETON_HOLDER = "SELECT run_id FROM singleton_locks WHERE key = %s FOR UPDATE"
RELEASE_SINGLETONS = "DELETE FROM singleton_locks WHERE run_id = %s"

# Run idempotency: the key is taken (or re-taken once expired) by the run that gets to start;
# no row back means another run holds it.
RESERVE_IDEMPOTENCY_KEY = """
INSERT INTO run_idempotency (key, run_id, expires_at) VALUES (%s, %s, %s)
ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at
 WHERE run_idempotency.expires_at < %s
RETURNING run_id
"""


async def take_singleton(conn: AsyncConn, key: str, run_id: str) -> str | None:
    """Take the lock for ``run_id``; None if taken, else the run that holds it."""
    cur = await conn.execute(TAKE_SINGLETON, (key, run_id))
    if await cur.fetchone() is not None:
        return None
    cur = await conn.execute(SINGLETON_HOLDER, (key,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])
