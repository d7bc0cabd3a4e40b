"""``LISTEN stepwell_queue`` on a dedicated connection: a wake-up hint for idle workers.

Notifications are only hints (they are lost while disconnected); the worker's poll loop is
what guarantees progress, so the listener reconnects quietly and never blocks a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from app.store.db import connect
from app.store.queue import CHANNEL

log = logging.getLogger(__name__)


async def listen(url: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Set ``wake`` on every notification until ``stop`` is set."""
    while not stop.is_set():
        try:
            conn = await connect(url)
            async with conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                wake.set()  # anything enqueued while we were not listening is due now
                async for _ in conn.notifies():
                    wake.set()
                    if stop.is_set():
                        break
        except psycopg.Error as exc:
            log.debug("queue listener disconnected: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
