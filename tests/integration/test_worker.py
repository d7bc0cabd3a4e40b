"""The worker loop against a real PostgreSQL: dispatch by kind, requeue on handler errors."""

from __future__ import annotations

import asyncio

from psycopg_pool import AsyncConnectionPool

from app.clock import SystemClock
from app.engine.worker import Worker
from app.store import queue as q
from app.store.db import AsyncConn, open_pool
from domain.queue import ClaimedItem, ItemKind, ItemSpec
from tests.conftest import count_rows


async def _run_until(worker: Worker, done: asyncio.Event) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_worker_dispatches_each_item_to_the_handler_of_its_kind(db_url: str) -> None:
    pool: AsyncConnectionPool[AsyncConn] = await open_pool(db_url, min_size=1, max_size=4)
    seen: list[tuple[str, str]] = []
    done = asyncio.Event()
    clock = SystemClock()

    def handler(label: str):  # type: ignore[no-untyped-def]
        async def handle(item: ClaimedItem) -> None:
            async with pool.connection() as conn:
                assert await q.ack_item(conn, item)
            seen.append((label, item.job_id))
            if len(seen) == 3:
                done.set()

        return handle

    async with pool.connection() as conn:
        now = clock.now_ms()
        await q.enqueue_items(
            conn,
            [
                ItemSpec(kind=ItemKind.EVENT, job_id="e1", available_at=now),
                ItemSpec(kind=ItemKind.START, job_id="s1", available_at=now),
                ItemSpec(kind=ItemKind.EVENT, job_id="e2", available_at=now),
            ],
            now,
        )
    worker = Worker(
        pool,
        {ItemKind.EVENT: handler("event"), ItemKind.START: handler("start")},
        clock,
        capacity=2,
        poll_interval=0.05,
    )
    await _run_until(worker, done)
    await pool.close()
    assert sorted(seen) == [("event", "e1"), ("event", "e2"), ("start", "s1")]
    assert count_rows(db_url, "queue_items") == 0


async def test_an_item_whose_handler_raises_is_requeued_not_lost(db_url: str) -> None:
    pool: AsyncConnectionPool[AsyncConn] = await open_pool(db_url, min_size=1, max_size=4)
    attempts: list[int] = []
    done = asyncio.Event()

    async def flaky(item: ClaimedItem) -> None:
        attempts.append(item.attempt)
        done.set()
        raise RuntimeError("boom")

    clock = SystemClock()
    async with pool.connection() as conn:
        await q.enqueue_items(
            conn,
            [ItemSpec(kind=ItemKind.EVENT, job_id="e1", available_at=clock.now_ms())],
            clock.now_ms(),
        )
    worker = Worker(pool, {ItemKind.EVENT: flaky}, clock, poll_interval=0.05)
    await _run_until(worker, done)
    await pool.close()
    assert attempts == [0]
    assert count_rows(db_url, "queue_items", "attempt = 1 AND lease_id IS NULL") == 1


async def test_a_long_handler_keeps_its_lease_and_a_handed_off_item_runs_in_the_same_slot(
    db_url: str,
) -> None:
    """Leases outlive a handler that runs for several lease periods (one keeper loop extends
    them), so no other claimer takes the item; an item the handler hands back runs next."""
    pool: AsyncConnectionPool[AsyncConn] = await open_pool(db_url, min_size=1, max_size=4)
    clock = SystemClock()
    lease_ms = 400
    calls: list[str] = []
    done = asyncio.Event()

    async def slow_then_hand_off(item: ClaimedItem) -> ClaimedItem | None:
        calls.append(item.job_id)
        if item.job_id == "next":
            async with pool.connection() as conn:
                assert await q.ack_item(conn, item)
            done.set()
            return None
        await asyncio.sleep(lease_ms * 3 / 1000)
        async with pool.connection() as conn:
            # Still ours: a rival claim finds nothing, and the item can be settled.
            assert await q.claim_due_items(conn, 5, lease_ms, clock.now_ms()) == []
            assert await q.ack_item(conn, item)
            nxt = ItemSpec(kind=ItemKind.EDGE, job_id="next", available_at=clock.now_ms())
            await q.enqueue_items(conn, [nxt], clock.now_ms())
            [handed] = await q.claim_due_items(conn, 1, lease_ms, clock.now_ms())
        return handed

    async with pool.connection() as conn:
        spec = ItemSpec(kind=ItemKind.START, job_id="slow", available_at=clock.now_ms())
        await q.enqueue_items(conn, [spec], clock.now_ms())
    handlers = {ItemKind.START: slow_then_hand_off, ItemKind.EDGE: slow_then_hand_off}
    worker = Worker(pool, handlers, clock, capacity=1, lease_ms=lease_ms, poll_interval=0.05)
    await _run_until(worker, done)
    await pool.close()
    assert calls == ["slow", "next"]
    assert count_rows(db_url, "queue_items") == 0
