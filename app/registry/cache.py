"""A short-lived in-process cache of active function records, for the executor's hot path.

Every step needs its function's URL; reading it from the registry each time is a round trip
per step.  Records are kept for ``ttl`` seconds, so a re-sync (a new URL, a new version) is
seen within that time; correctness never depends on the cache (the run's own config version
is in its history).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from app.registry.store import FunctionRecord
from app.store.db import AsyncConn


class FunctionCache:
    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, FunctionRecord | None]] = {}

    async def get(
        self,
        conn: AsyncConn,
        key: str,
        load: Callable[[AsyncConn, str], Awaitable[FunctionRecord | None]],
    ) -> FunctionRecord | None:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        record = await load(conn, key)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (now, record)
        return record
