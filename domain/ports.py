"""Ports: the storage and outside-world interfaces the engine is written against.

Adapters live in ``app/store`` (Postgres), ``app/redis`` (Redis + Lua) and the unit-test fakes.
Each port has one contract suite in ``tests/`` run against every adapter.  Methods take an
explicit ``now_ms`` where time matters so that adapters never read a clock of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from domain.history import HistoryEvent
from domain.opcodes import CallResult
from domain.queue import ClaimedItem, ItemSpec


class Clock(Protocol):
    def now_ms(self) -> int: ...


class HistoryStore(Protocol):
    async def load(self, run_id: str) -> list[HistoryEvent]:
        """The run's history in version order (empty for an unknown run)."""
        ...

    async def append(
        self, run_id: str, expected_version: int, events: Sequence[HistoryEvent]
    ) -> int:
        """Append after ``expected_version``; raise ``VersionConflict`` if it moved.

        Returns the new version.  Either every event is stored or none is.
        """
        ...


class Queue(Protocol):
    async def enqueue(self, items: Sequence[ItemSpec]) -> int:
        """Insert items; an existing job id is a no-op.  Returns how many were new."""
        ...

    async def claim(self, limit: int, lease_ms: int, now_ms: int) -> list[ClaimedItem]:
        """Lease up to ``limit`` due items; no item is leased to two claimers at once."""
        ...

    async def extend_lease(self, item: ClaimedItem, lease_ms: int, now_ms: int) -> bool:
        """Push the lease out; False if the lease was lost (expired and re-claimed, or acked)."""
        ...

    async def ack(self, item: ClaimedItem) -> bool:
        """Delete the item if this worker still holds its lease."""
        ...

    async def requeue(self, item: ClaimedItem, available_at: int, attempt: int) -> bool:
        """Release the lease and make the item due again at ``available_at``."""
        ...


class SdkCaller(Protocol):
    async def call(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> CallResult: ...
