"""The worker loop: claim due items in batches, run each with its handler, keep leases alive.

A process runs one ``Worker`` with up to ``capacity`` items in flight; one loop keeps all of
their leases alive (on a connection of its own, so busy handlers cannot delay it).  It claims
only as many items as it has free slots, so a busy worker leaves the rest to its peers (SKIP
LOCKED does the sharing).  Handlers commit their own transition (which acks the item).  A run's
next call can be handed straight back by the handler that committed its previous step: the
slot runs it at once, with no claim, NOTIFY or poll in between.

Failures: a handler that raises has its item requeued with a growing backoff and one more
failed delivery counted; so does a takeover of an expired lease (counted by the claim).  An item
whose failed deliveries reach ``max_failures`` is moved to the dead letters instead of being
retried forever (``app/store/dead_letters.py``).  A lease that cannot be extended in time — it
was taken over, or the database could not be reached before it ran out — is lost: the handler
working under it is cancelled (an SDK call in flight is abandoned), since another worker may
already be running the same item and whatever this one would commit is refused anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from app.store import dead_letters
from app.store import queue as q
from app.store.db import AsyncConn
from domain.ports import Clock
from domain.queue import ClaimedItem, ItemKind

log = logging.getLogger(__name__)

#: A handler may return the next item it was handed (inserted already leased to this worker by
#: its own transition, see ``app/store/queue.py``); the worker runs it in the same slot.
Handler = Callable[[ClaimedItem], Awaitable[ClaimedItem | None]]
INTERNAL_RETRY_MAX_MS = 60_000
#: Failed deliveries (expired leases, internal errors) after which an item is a dead letter:
#: with the backoff above, about four minutes of an item failing over and over.
MAX_FAILURES = 10
#: A handed-off item's lease began at its commit, a moment before the worker sees it.
HANDOFF_MARGIN_MS = 1_000


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(slots=True)
class _Held:
    """An item in hand: when its lease ends by this worker's monotonic clock (never later than
    by the database's, which started it), and the task working on it."""

    item: ClaimedItem
    deadline_ms: int
    task: asyncio.Task[None] | None


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
        max_failures: int = MAX_FAILURES,
    ) -> None:
        self.pool = pool
        #: Lease extensions use a pool of their own, so busy handlers cannot delay them.
        self.lease_pool = lease_pool or pool
        self.handlers = dict(handlers)
        self.clock = clock
        self.capacity = capacity
        self.lease_ms = lease_ms
        self.poll_interval = poll_interval
        self.max_failures = max_failures
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stop: asyncio.Event | None = None
        #: Items being handled, by id.
        self._held: dict[int, _Held] = {}
        #: Ids of items whose lease was lost while their handler ran (it is being cancelled).
        self._lost: set[int] = set()

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
                claimed_at = _monotonic_ms()
                items = await self._claim(free)
                for item in items:
                    self._spawn(item, claimed_at + self.lease_ms)
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

    def _spawn(self, item: ClaimedItem, deadline_ms: int) -> None:
        task = asyncio.create_task(self._process(item, deadline_ms))
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _process(self, item: ClaimedItem, deadline_ms: int) -> None:
        current: ClaimedItem | None = item
        while current is not None:
            if self.stopping:
                # Shutting down: give a handed-off item back to the queue now rather than
                # leaving it to its lease.
                await self._requeue(current, self.clock.now_ms())
                return
            current = await self._process_one(current, deadline_ms)
            deadline_ms = _monotonic_ms() + self.lease_ms - HANDOFF_MARGIN_MS

    async def _process_one(self, item: ClaimedItem, deadline_ms: int) -> ClaimedItem | None:
        if item.failures >= self.max_failures:
            await self._bury(item, item.failures, item.last_error)
            return None
        handler = self.handlers.get(item.kind)
        self._held[item.id] = _Held(item, deadline_ms, asyncio.current_task())
        try:
            if handler is None:
                raise LookupError(f"no handler for queue items of kind {item.kind.value!r}")
            return await handler(item)
        except asyncio.CancelledError:
            if item.id not in self._lost:
                raise
            # Cancelled by the lease keeper, not by shutdown: the item belongs to whoever
            # claims it next; this slot moves on.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            log.warning("abandoned queue item %s (%s): its lease was lost", item.id, item.job_id)
            return None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            if item.failures + 1 >= self.max_failures:
                log.exception("queue item %s (%s) failed; it is a dead letter now", item.id,
                              item.job_id)  # fmt: skip
                await self._bury(item, item.failures + 1, error)
                return None
            log.exception("queue item %s (%s) failed; requeueing", item.id, item.job_id)
            delay = min(1000 * 2 ** min(item.failures, 16), INTERNAL_RETRY_MAX_MS)
            await self._requeue(item, self.clock.now_ms() + delay, error=error)
            return None
        finally:
            self._held.pop(item.id, None)
            self._lost.discard(item.id)

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """One loop for every item in hand: leases within half a lease of running out are
        extended together, in one statement (no timer task per item).  A lease that was not
        extended, or whose deadline passed while the database could not be reached, is lost
        and its handler cancelled."""
        tick = self.lease_ms / 4000
        while not stop.is_set():
            await asyncio.sleep(tick)
            asked_at = _monotonic_ms()
            half = self.lease_ms / 2
            due = [h.item for h in self._held.values() if h.deadline_ms - asked_at < half]
            if not due:
                continue
            try:
                async with self.lease_pool.connection() as conn:
                    kept = await q.extend_leases(conn, due, self.lease_ms)
            except Exception:
                log.exception("extending leases failed; retrying")
                self._drop_expired(_monotonic_ms())
                continue
            for item in due:
                held = self._held.get(item.id)
                if held is None or held.item is not item:
                    continue  # finished meanwhile
                if item.id in kept:
                    held.deadline_ms = asked_at + self.lease_ms
                else:
                    self._lose(held)

    def _drop_expired(self, now_ms: int) -> None:
        for held in list(self._held.values()):
            if held.deadline_ms <= now_ms:
                self._lose(held)

    def _lose(self, held: _Held) -> None:
        log.warning("lost the lease on queue item %s (%s)", held.item.id, held.item.job_id)
        self._held.pop(held.item.id, None)
        if held.task is not None and not held.task.done():
            self._lost.add(held.item.id)
            held.task.cancel()

    async def _bury(self, item: ClaimedItem, failures: int, last_error: str | None) -> None:
        reason = f"{failures} deliveries failed; last: {last_error}"
        try:
            async with self.pool.connection() as conn:
                buried = await dead_letters.bury(conn, item, failures, reason)
        except Exception:
            log.exception("moving item %s to the dead letters failed; its lease will expire",
                          item.id)  # fmt: skip
            return
        if buried:
            log.error("queue item %s (%s) is a dead letter: %s", item.id, item.job_id, reason)

    async def _requeue(self, item: ClaimedItem, at_ms: int, *, error: str | None = None) -> None:
        try:
            async with self.pool.connection() as conn:
                await q.requeue_item(conn, item, at_ms, error=error)
        except Exception:
            log.exception("requeueing item %s failed; its lease will expire", item.id)
