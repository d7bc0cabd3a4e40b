"""History append/load against a real PostgreSQL, and one transition's atomicity."""

from __future__ import annotations

import asyncio

import pytest

from app.store import queue as q
from app.store.db import AsyncConn
from app.store.history import append_history, load_history
from app.store.runs_view import load_run_row
from app.store.transitions import LeaseLost, Transition, commit_transition
from domain import history as h
from domain.effects import Decision, Enqueue
from domain.errors import VersionConflict
from domain.queue import ItemKind, ItemSpec
from tests.conftest import count_rows

T0 = 1_800_000_000_000


def scheduled(run_id: str = "01JRUN0000000000000000000A") -> h.RunScheduled:
    return h.RunScheduled(
        at=T0,
        run_id=run_id,
        function_id="fn",
        function_slug="app-fn",
        function_version=1,
        app_id="app",
        events=({"name": "e", "data": {}, "id": "x", "ts": T0, "user": {}},),
        event_ids=("01JEVT0000000000000000000A",),
        idempotency_key="x",
        max_attempts=5,
    )


async def test_appended_history_loads_back_in_order(conn: AsyncConn) -> None:
    events = [
        scheduled(),
        h.RunStarted(at=T0 + 1, request_version=2),
        h.StepCompleted(
            at=T0 + 2,
            step_id="s1",
            name="a",
            output={"data": [1, "x"]},
            attempt=0,
            started_at=T0 + 1,
        ),
    ]
    async with conn.transaction():
        await append_history(conn, "run-1", 0, events[:1])
    async with conn.transaction():
        await append_history(conn, "run-1", 1, events[1:])
    assert await load_history(conn, "run-1") == events


async def test_an_append_with_a_stale_version_fails_and_changes_nothing(
    conn: AsyncConn, db_url: str
) -> None:
    async with conn.transaction():
        await append_history(conn, "run-1", 0, [scheduled()])
    with pytest.raises(VersionConflict):
        async with conn.transaction():
            await append_history(conn, "run-1", 0, [h.RunStarted(at=T0), h.RunStarted(at=T0)])
    assert count_rows(db_url, "run_history") == 1
    assert len(await load_history(conn, "run-1")) == 1


async def test_a_transition_acks_its_item_enqueues_the_next_and_updates_the_view(
    conn: AsyncConn, db_url: str
) -> None:
    run_id = "01JRUN0000000000000000000A"
    nxt = ItemSpec(kind=ItemKind.EDGE, job_id="next", available_at=T0, run_id=run_id)
    async with conn.transaction():
        await append_history(conn, run_id, 0, [scheduled(run_id)])
        await q.enqueue_items(
            conn,
            [ItemSpec(kind=ItemKind.START, job_id="start", available_at=T0, run_id=run_id)],
            T0,
        )
    [claimed] = await q.claim_due_items(conn, 1, 30_000, T0)
    history = await load_history(conn, run_id)
    decision = Decision([h.RunStarted(at=T0 + 5)], [Enqueue(item=nxt)])
    await commit_transition(
        conn, Transition.on(run_id, history, decision, claimed, T0 + 5), lambda _p: None
    )
    assert [c.job_id for c in await q.claim_due_items(conn, 5, 30_000, T0 + 10)] == ["next"]
    row = await load_run_row(conn, run_id)
    assert row is not None and row.status == "Running"
    assert count_rows(db_url, "queue_items", "job_id = 'start'") == 0


async def test_a_transition_whose_lease_was_lost_writes_nothing(
    conn: AsyncConn, db_url: str
) -> None:
    run_id = "01JRUN0000000000000000000A"
    async with conn.transaction():
        await append_history(conn, run_id, 0, [scheduled(run_id)])
        await q.enqueue_items(
            conn,
            [ItemSpec(kind=ItemKind.START, job_id="start", available_at=T0, run_id=run_id)],
            T0,
        )
    [stale] = await q.claim_due_items(conn, 1, 200, T0)
    await asyncio.sleep(0.3)  # stale's lease expires (by the database's clock)
    [_fresh] = await q.claim_due_items(conn, 1, 200, T0)
    history = await load_history(conn, run_id)
    nxt = ItemSpec(kind=ItemKind.EDGE, job_id="next", available_at=T0, run_id=run_id)
    with pytest.raises(LeaseLost):
        await commit_transition(
            conn,
            Transition.on(
                run_id, history, Decision([h.RunStarted(at=T0)], [Enqueue(item=nxt)]), stale, T0
            ),
            lambda _p: None,
        )
    assert count_rows(db_url, "run_history") == 1
    assert count_rows(db_url, "queue_items", "job_id = 'next'") == 0


async def test_a_general_transition_on_a_stale_version_conflicts_and_leaves_the_connection_usable(
    conn: AsyncConn, db_url: str
) -> None:
    from domain.effects import CreatePause

    run_id = "01JRUN0000000000000000000A"
    async with conn.transaction():
        await append_history(conn, run_id, 0, [scheduled(run_id)])
    history = await load_history(conn, run_id)
    pause = CreatePause(
        pause_id="p1",
        run_id=run_id,
        step_id="w",
        kind="wait",
        event_name="e",
        expression=None,
        expires_at=T0 + 1000,
        created_at=T0,
    )
    first = Transition.on(run_id, history, Decision([h.RunStarted(at=T0)], [pause]), None, T0)
    await commit_transition(conn, first, lambda _p: None)
    stale = Transition.on(run_id, history, Decision([h.RunStarted(at=T0)], [pause]), None, T0)
    with pytest.raises(VersionConflict):
        await commit_transition(conn, stale, lambda _p: None)
    # The aborted transaction was ended: the same connection keeps working.
    assert len(await load_history(conn, run_id)) == 2
    assert count_rows(db_url, "pauses") == 1
