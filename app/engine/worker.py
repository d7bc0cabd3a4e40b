"""The worker loop: claim due items in batches, run each with its handler, keep leases alive.

A process runs one ``Worker`` with up to ``capacity`` items in flight; one loop keeps all of
their leases alive.  It claims only as many items as it has free slots, so a busy worker leaves
the rest to its peers (SKIP LOCKED does the sharing).  Handlers commit their own transition
(which acks the item); when a handler raises, the item is requeued with a short backoff so that
an internal error never loses work.  A run's next call can be handed straight back by the handler
that committed its previous step: the slot runs it at once, with no claim, NOTIFY or poll in
between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from psycopg_pool import AsyncConnectionPool

from app.store import queue as q
from app.store.db import AsyncConn
from domain.ports import Clock
from domain.queue import ClaimedItem, ItemKind

log = logging.getLogger(__name__)

#: A handler may return the next item it was handed (inserted already leased to this worker by
#: its own transition, see ``app/store/queue.py``); the worker runs it in the same slot.
Handler = Callable[[ClaimedItem], Awaitable[ClaimedItem | None]]
INTERNAL_RETRY_MAX_MS = 60_000


class Worker:
    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        handlers: Mapping[ItemKind, Handler],
        clock: Clock,
        *,
        capacity: int = 32,
        lease_ms: int = 30_000,
        poll_interval: float = 0.1,
        lease_pool: AsyncConnectionPool[AsyncConn] | None = None,
    ) -> None:
        self.pool = pool
        #: Lease extensions use a pool of their own, so busy handlers cannot delay them.
        self.lease_pool = lease_pool or pool
        self.handlers = dict(handlers)
        self.clock = clock
        self.capacity = capacity
        self.lease_ms = lease_ms
        self.poll_interval = poll_interval
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stop: asyncio.Event | None = None
        #: Items being handled, by id, with the time (ms) their lease runs out.
        self._held: dict[int, tuple[ClaimedItem, int]] = {}

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        keeper = asyncio.create_task(self._keep_leases(stop))
        try:
            while not stop.is_set():
                free = self.capacity - len(self._tasks)
                if free <= 0:
                    await self._wait(self._slot_freed, stop)
                    continue
                self.wake.clear()
                items = await self._claim(free)
                for item in items:
                    self._spawn(item)
                if len(items) < free:
                    await self._wait(self.wake, stop)
            await self.drain()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def drain(self) -> None:
        """Wait for in-flight items (shutdown); unfinished ones fall back to their lease."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _wait(self, event: asyncio.Event, stop: asyncio.Event) -> None:
        stop_wait = asyncio.ensure_future(stop.wait())
        event_wait = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait(
                {stop_wait, event_wait},
                timeout=self.poll_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stop_wait.cancel()
            event_wait.cancel()
        event.clear()

    async def _claim(self, limit: int) -> list[ClaimedItem]:
        try:
            async with self.pool.connection() as conn:
                return await q.claim_due_items(conn, limit, self.lease_ms, self.clock.now_ms())
        except Exception:
            log.exception("claiming queue items failed")
            return []

    def _spawn(self, item: ClaimedItem) -> None:
        task = asyncio.create_task(self._process(item))
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _process(self, item: ClaimedItem) -> None:
        current: ClaimedItem | None = item
        while current is not None:
            if self.stopping:
                # Shutting down: give a handed-off item back to the queue now rather than
                # leaving it to its lease.
                await self._requeue(current, self.clock.now_ms(), current.attempt)
                return
            current = await self._process_one(current)

    async def _process_one(self, item: ClaimedItem) -> ClaimedItem | None:
        handler = self.handlers.get(item.kind)
        self._held[item.id] = (item, item.leased_until)
        try:
            if handler is None:
                raise LookupError(f"no handler for queue items of kind {item.kind.value!r}")
            return await handler(item)
        except Exception:
            log.exception("queue item %s (%s) failed; requeueing", item.id, item.job_id)
            delay = min(1000 * 2 ** min(item.attempt, 16), INTERNAL_RETRY_MAX_MS)
            await self._requeue(item, self.clock.now_ms() + delay, item.attempt + 1)
            return None
        finally:
            self._held.pop(item.id, None)

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """One loop for every item in hand: leases within half a lease of running out are
        extended together, in one statement (no timer task per item)."""
        tick = self.lease_ms / 4000
        while not stop.is_set():
            await asyncio.sleep(tick)
            now = self.clock.now_ms()
            due = [item for item, until in self._held.values() if until - now < self.lease_ms / 2]
            if not due:
                continue
            try:
                async with self.lease_pool.connection() as conn:
                    kept = await q.extend_leases(conn, due, self.lease_ms, now)
            except Exception:
                log.exception("extending leases failed; retrying")
                continue
            for item in due:
                if item.id not in self._held:
                    continue  # finished meanwhile
                if item.id in kept:
                    self._held[item.id] = (item, now + self.lease_ms)
                else:
                    log.warning("lost the lease on queue item %s", item.id)
                    self._held.pop(item.id, None)

    async def _requeue(self, item: ClaimedItem, at_ms: int, attempt: int) -> None:
        try:
            async with self.pool.connection() as conn:
                await q.requeue_item(conn, item, at_ms, attempt)
        except Exception:
            log.exception("requeueing item %s failed; its lease will expire", item.id)
