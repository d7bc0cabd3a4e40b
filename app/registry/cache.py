"""A short-lived in-process cache of active function records, for the executor's hot path.

Every step needs its function's URL; reading it from the registry each time is a round trip
per step.  Records are kept for ``ttl`` seconds, so a re-sync (a new URL, a new version) is
seen within that time; correctness never depends on the cache (the run's own config version
is in its history).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from app.registry.store import FunctionRecord, functions_for_event
from app.store.db import AsyncConn, LazyConnection


class FunctionCache:
    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, FunctionRecord | None]] = {}

    async def get(
        self,
        conn: LazyConnection,
        key: str,
        load: Callable[[AsyncConn, str], Awaitable[FunctionRecord | None]],
    ) -> FunctionRecord | None:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        record = await load(await conn.get(), key)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (now, record)
        return record

    def clear(self) -> None:
        self._entries.clear()


class TriggerIndex:
    """The functions each event name triggers, kept for one registry version.

    ``registry_version`` is bumped in every transaction that writes the registry (migration
    0008).  A caller passes the version it read (with the event, in one statement); a copy
    made at that version is exact.  On a miss the list is read after that version was, so it
    is at least as new: at worst it is reloaded once more, never served stale.
    """

    def __init__(self, max_names: int = 10_000) -> None:
        self.max_names = max_names
        self._version: int | None = None
        self._by_name: dict[str, list[FunctionRecord]] = {}

    async def functions_for_event(
        self, conn: AsyncConn, event_name: str, version: int | None
    ) -> list[FunctionRecord]:
        if version is not None and version == self._version:
            hit = self._by_name.get(event_name)
            if hit is not None:
                return hit
        records = await functions_for_event(conn, event_name)
        if version is None:
            return records
        if version != self._version or len(self._by_name) >= self.max_names:
            self._version = version
            self._by_name = {}
        self._by_name[event_name] = records
        return records
