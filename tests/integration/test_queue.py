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


LEASE_MS = 300


async def outlive_lease() -> None:
    """Leases run on the database's clock: only real time expires them."""
    await asyncio.sleep(LEASE_MS / 1000 + 0.1)


async def test_an_item_whose_worker_died_is_claimed_again_after_its_lease_expires(
    conn: AsyncConn,
) -> None:
    await q.enqueue_items(conn, [item("job")], T0)
    [first] = await q.claim_due_items(conn, 1, LEASE_MS, T0)
    assert first.failures == 0 and first.last_error is None
    assert await q.claim_due_items(conn, 1, LEASE_MS, T0) == []
    await outlive_lease()
    [second] = await q.claim_due_items(conn, 1, LEASE_MS, T0)
    assert second.id == first.id and second.lease_id != first.lease_id
    # The takeover counts as a failed delivery, not as an SDK attempt.
    assert (second.attempt, second.failures) == (0, 1)
    assert second.last_error is not None and "lease expired" in second.last_error
    # The dead worker's lease is gone: it can neither ack nor extend nor requeue.
    assert not await q.ack_item(conn, first)
    assert await q.extend_leases(conn, [first], LEASE_MS) == set()
    assert not await q.requeue_item(conn, first, T0)
    assert await q.ack_item(conn, second)
    assert await q.claim_due_items(conn, 1, LEASE_MS, T0 + 10_000) == []


async def test_a_lease_is_judged_by_the_database_clock_not_the_claimers(conn: AsyncConn) -> None:
    """A claimer whose clock runs an hour ahead still cannot take over a live lease (and its
    clock still decides which free items are due, as it decided their due times)."""
    await q.enqueue_items(conn, [item("job"), item("later", at=T0 + 3_600_000)], T0)
    [held] = await q.claim_due_items(conn, 1, 30_000, T0)
    ahead = T0 + 3_600_000
    assert [c.job_id for c in await q.claim_due_items(conn, 5, 30_000, ahead)] == ["later"]
    assert await q.ack_item(conn, held)


async def test_extending_a_lease_keeps_the_item_from_other_claimers(conn: AsyncConn) -> None:
    await q.enqueue_items(conn, [item("job")], T0)
    [held] = await q.claim_due_items(conn, 1, LEASE_MS, T0)
    for _ in range(3):
        await asyncio.sleep(LEASE_MS / 2000)
        assert await q.extend_leases(conn, [held], LEASE_MS) == {held.id}
    assert await q.claim_due_items(conn, 1, LEASE_MS, T0) == []
    await outlive_lease()
    # An expired lease cannot be extended any more, even before anyone took the item over.
    assert await q.extend_leases(conn, [held], LEASE_MS) == set()
    assert len(await q.claim_due_items(conn, 1, LEASE_MS, T0)) == 1


async def test_requeue_releases_the_lease_and_delays_the_item(conn: AsyncConn) -> None:
    await q.enqueue_items(conn, [item("job")], T0)
    [held] = await q.claim_due_items(conn, 1, 30_000, T0)
    assert await q.requeue_item(conn, held, T0 + 5_000, error="RuntimeError: boom")
    assert await q.claim_due_items(conn, 1, 30_000, T0 + 4_999) == []
    [again] = await q.claim_due_items(conn, 1, 30_000, T0 + 5_000)
    assert (again.attempt, again.failures, again.last_error) == (0, 1, "RuntimeError: boom")


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
