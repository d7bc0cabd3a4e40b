"""The worker loop against a real PostgreSQL: dispatch by kind, requeue on handler errors."""

from __future__ import annotations

import asyncio

from psycopg_pool import AsyncConnectionPool

from app.clock import SystemClock
from app.engine.worker import Worker
from app.store import dead_letters
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
    # One failed delivery is counted (with its error); the SDK-facing attempt is untouched.
    assert (
        count_rows(
            db_url,
            "queue_items",
            "attempt = 0 AND failures = 1 AND last_error = 'RuntimeError: boom'"
            " AND lease_id IS NULL",
        )
        == 1
    )


async def test_an_item_that_keeps_failing_becomes_a_dead_letter_with_its_reason(
    db_url: str,
) -> None:
    pool: AsyncConnectionPool[AsyncConn] = await open_pool(db_url, min_size=1, max_size=4)
    seen: list[int] = []
    done = asyncio.Event()

    async def broken(item: ClaimedItem) -> None:
        seen.append(item.failures)
        if len(seen) == 2:
            asyncio.get_running_loop().call_later(0.3, done.set)
        raise ValueError(f"cannot handle {item.job_id}")

    clock = SystemClock()
    async with pool.connection() as conn:
        await q.enqueue_items(
            conn,
            [ItemSpec(kind=ItemKind.EVENT, job_id="poison", available_at=clock.now_ms())],
            clock.now_ms(),
        )
    worker = Worker(pool, {ItemKind.EVENT: broken}, clock, poll_interval=0.05, max_failures=2)
    await _run_until(worker, done)
    async with pool.connection() as conn:
        [dead] = await dead_letters.list_dead(conn, limit=10)
        # Retrying puts it back on the queue, due now, with a fresh count.
        assert await dead_letters.retry(conn, dead.id) == "requeued"
        assert await dead_letters.retry(conn, dead.id) == "not-found"
    await pool.close()
    assert seen == [0, 1]
    assert (dead.job_id, dead.failures) == ("poison", 2)
    assert dead.reason == "2 deliveries failed; last: ValueError: cannot handle poison"
    assert count_rows(db_url, "queue_items", "job_id = 'poison' AND failures = 0") == 1
    assert count_rows(db_url, "dead_letters") == 0


async def test_a_lost_lease_cancels_the_handler_working_under_it(db_url: str) -> None:
    """Another worker took the item over (here: its lease id changed under us): the keeper's
    extension finds it gone, the in-flight handler is cancelled, and the slot goes on."""
    pool: AsyncConnectionPool[AsyncConn] = await open_pool(db_url, min_size=1, max_size=4)
    clock = SystemClock()
    started, cancelled, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def long_call(item: ClaimedItem) -> None:
        if item.job_id == "after":
            async with pool.connection() as conn:
                await q.ack_item(conn, item)
            done.set()
            return
        started.set()
        try:
            await asyncio.sleep(60)  # an SDK call that would run for a minute
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with pool.connection() as conn:
        now = clock.now_ms()
        await q.enqueue_items(
            conn, [ItemSpec(kind=ItemKind.START, job_id="long", available_at=now)], now
        )
    worker = Worker(
        pool, {ItemKind.START: long_call}, clock, capacity=1, lease_ms=400, poll_interval=0.05
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with pool.connection() as conn:
            await conn.execute("UPDATE queue_items SET lease_id = 'rival' WHERE job_id = 'long'")
            now = clock.now_ms()
            await q.enqueue_items(
                conn, [ItemSpec(kind=ItemKind.START, job_id="after", available_at=now)], now
            )
        await asyncio.wait_for(cancelled.wait(), 10)
        await asyncio.wait_for(done.wait(), 10)  # the one slot is free again
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await pool.close()
    assert count_rows(db_url, "queue_items", "job_id = 'long' AND lease_id = 'rival'") == 1


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
