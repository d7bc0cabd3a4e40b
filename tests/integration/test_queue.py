"""The queue table against a real PostgreSQL: claims, leases, idempotent enqueue, ack, requeue."""

from __future__ import annotations

import asyncio

from app.store import queue as q
from app.store.db import AsyncConn, connect
from domain.queue import ItemKind, ItemSpec

T0 = 1_800_000_000_000


def item(job: str, at: int = T0, score: int | None = None) -> ItemSpec:
    return ItemSpec(
        kind=ItemKind.EDGE,
        job_id=job,
        available_at=at,
        run_id="r",
        score=score,
        payload={"step_id": "step"},
    )


async def test_enqueueing_an_existing_job_id_is_a_no_op(conn: AsyncConn) -> None:
    assert await q.enqueue_items(conn, [item("job-1")], T0) == 1
    assert await q.enqueue_items(conn, [item("job-1", at=T0 + 5000), item("job-2")], T0) == 1
    claimed = await q.claim_due_items(conn, 10, 30_000, T0)
    assert sorted(c.job_id for c in claimed) == ["job-1", "job-2"]


async def test_claim_returns_only_due_items_lowest_score_first(conn: AsyncConn) -> None:
    await q.enqueue_items(
        conn, [item("late", at=T0 + 60_000), item("b", score=20), item("a", score=10)], T0
    )
    claimed = await q.claim_due_items(conn, 10, 120_000, T0)
    assert [c.job_id for c in claimed] == ["a", "b"]
    assert await q.claim_due_items(conn, 10, 30_000, T0) == []
    assert [c.job_id for c in await q.claim_due_items(conn, 10, 30_000, T0 + 60_000)] == ["late"]


async def test_an_item_whose_worker_died_is_claimed_again_after_its_lease_expires(
    conn: AsyncConn,
) -> None:
    await q.enqueue_items(conn, [item("job")], T0)
    [first] = await q.claim_due_items(conn, 1, 1_000, T0)
    assert await q.claim_due_items(conn, 1, 1_000, T0 + 999) == []
    [second] = await q.claim_due_items(conn, 1, 1_000, T0 + 1_001)
    assert second.id == first.id and second.lease_id != first.lease_id
    # The dead worker's lease is gone: it can neither ack nor extend nor requeue.
    assert not await q.ack_item(conn, first)
    assert await q.extend_leases(conn, [first], 1_000, T0 + 1_002) == set()
    assert not await q.requeue_item(conn, first, T0, 1)
    assert await q.ack_item(conn, second)
    assert await q.claim_due_items(conn, 1, 1_000, T0 + 10_000) == []


async def test_extending_a_lease_keeps_the_item_from_other_claimers(conn: AsyncConn) -> None:
    await q.enqueue_items(conn, [item("job")], T0)
    [held] = await q.claim_due_items(conn, 1, 1_000, T0)
    assert await q.extend_leases(conn, [held], 1_000, T0 + 900) == {held.id}
    assert await q.claim_due_items(conn, 1, 1_000, T0 + 1_500) == []
    assert len(await q.claim_due_items(conn, 1, 1_000, T0 + 1_901)) == 1


async def test_requeue_releases_the_lease_and_delays_the_item(conn: AsyncConn) -> None:
    await q.enqueue_items(conn, [item("job")], T0)
    [held] = await q.claim_due_items(conn, 1, 30_000, T0)
    assert await q.requeue_item(conn, held, T0 + 5_000, held.attempt + 1)
    assert await q.claim_due_items(conn, 1, 30_000, T0 + 4_999) == []
    [again] = await q.claim_due_items(conn, 1, 30_000, T0 + 5_000)
    assert again.attempt == 1


async def test_two_concurrent_claimers_never_receive_the_same_item(db_url: str) -> None:
    setup = await connect(db_url)
    total = 600
    await q.enqueue_items(setup, [item(f"job-{i}", score=i) for i in range(total)], T0)
    await setup.close()

    async def claimer() -> list[int]:
        got: list[int] = []
        c = await connect(db_url)
        try:
            while True:
                batch = await q.claim_due_items(c, 7, 60_000, T0)
                if not batch:
                    return got
                got.extend(i.id for i in batch)
                await asyncio.sleep(0)
        finally:
            await c.close()

    results = await asyncio.gather(claimer(), claimer(), claimer())
    everything = [i for r in results for i in r]
    assert len(everything) == total
    assert len(set(everything)) == total
    assert all(r for r in results), "every claimer should have won some rounds"


async def test_enqueueing_a_due_item_notifies_listeners_at_commit(db_url: str) -> None:
    listener = await connect(db_url)
    writer = await connect(db_url)
    try:
        await listener.execute(f"LISTEN {q.CHANNEL}")
        gen = listener.notifies(timeout=5, stop_after=1)
        async with writer.transaction():
            await q.enqueue_items(writer, [item("job")], T0)
        got = [n.channel async for n in gen]
        assert got == [q.CHANNEL]
    finally:
        await listener.close()
        await writer.close()
