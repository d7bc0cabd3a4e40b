"""Keeping the queue table small when PostgreSQL's autovacuum is off.

Every claim and ack rewrites or deletes a ``queue_items`` row, so the table produces dead
tuples quickly; autovacuum normally reclaims them.  Some servers run with autovacuum off (the
benchmark machine does); there, one Stepwell process at a time — chosen by an advisory lock —
vacuums the queue every ``interval`` seconds so it stays small and hot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import psycopg

from app.store.db import connect

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)
LOCK_KEY = 7_315_042  # arbitrary, Stepwell's "queue maintenance" advisory lock


async def vacuum_queue_if_needed(services: Services, interval: float = 30.0) -> None:
    try:
        conn = await connect(services.database_url)
    except psycopg.Error:
        log.warning("queue maintenance could not connect; skipping")
        return
    async with conn:
        cur = await conn.execute("SELECT current_setting('autovacuum')::bool")
        row = await cur.fetchone()
        if row is None or row[0]:
            return  # autovacuum does the job
        log.info("autovacuum is off on this server: vacuuming queue_items every %.0f s", interval)
        while not services.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(services.stop.wait(), interval)
            if services.stop.is_set():
                return
            try:
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
                locked = await cur.fetchone()
                if locked and locked[0]:
                    await conn.execute("VACUUM (ANALYZE) queue_items")
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            except psycopg.Error as exc:
                log.warning("vacuuming queue_items failed: %s", exc)
                return
