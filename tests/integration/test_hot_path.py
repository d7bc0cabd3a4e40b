"""The engine's hot-path shortcuts keep the queue's guarantees.

* A step's transition can hand the run's next call to its own worker: the item is inserted
  already leased, so no other claimer takes it — and if that worker dies, the lease expires
  and the item is claimed like any other.
* A worker's run snapshots are used only when the claim finds the run at the snapshot's
  version; a run advanced by anyone else is read again.
* The trigger index follows every registry write (the version bumped by triggers).
"""

from __future__ import annotations

import asyncio
import dataclasses

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.engine.run_cache import RunCache, Snapshot
from app.registry.cache import TriggerIndex
from app.store import queue as q
from app.store.db import AsyncConn
from app.store.events import load_event
from app.store.fast_transition import Scheduled, commit_schedule
from app.store.history import append_history, load_history
from app.store.transitions import Transition, commit_transition
from domain import history as h
from domain.effects import Decision, Enqueue
from domain.queue import ItemKind, ItemSpec
from tests.conftest import count_rows
from tests.integration.test_history import T0, scheduled

RUN = "01JRUN0000000000000000000A"
URL = "http://127.0.0.1:9/api?fnId=shop-order&stepId=step"


async def _started_run(conn: AsyncConn) -> q.ClaimedItem:
    async with conn.transaction():
        await append_history(conn, RUN, 0, [scheduled(RUN)])
        start = ItemSpec(kind=ItemKind.START, job_id="start", available_at=T0, run_id=RUN)
        await q.enqueue_items(conn, [start], T0)
    [claimed] = await q.claim_due_items(conn, 1, 30_000, T0)
    return claimed


def _step(step_id: str, at: int) -> h.StepCompleted:
    return h.StepCompleted(
        at=at, step_id=step_id, name=step_id, output={"data": 1}, attempt=0, started_at=at
    )


async def test_a_handed_off_call_is_leased_to_its_worker_and_reclaimed_if_it_dies(
    conn: AsyncConn, db_url: str
) -> None:
    claimed = await _started_run(conn)
    assert claimed.run_version == 1
    history = await load_history(conn, RUN)
    nxt = ItemSpec(kind=ItemKind.EDGE, job_id="next", available_at=T0 + 5, run_id=RUN)
    decision = Decision([_step("a", T0 + 5)], [Enqueue(item=nxt)])
    lease = q.Lease("handoff-lease", 300)
    handed = await commit_transition(
        conn, Transition.on(RUN, history, decision, claimed, T0 + 5), lambda _p: None, lease
    )
    assert handed is not None
    assert (handed.job_id, handed.lease_id, handed.run_version) == ("next", lease.lease_id, 2)
    assert count_rows(db_url, "queue_items", "job_id = 'start'") == 0
    # Nobody else can claim it while the lease holds ...
    assert await q.claim_due_items(conn, 5, 30_000, T0 + 10) == []
    # ... its holder can keep it under that lease ...
    assert await q.extend_leases(conn, [handed], 300) == {handed.id}
    # ... and if the holder dies, the item is claimed again once the lease has expired.
    await asyncio.sleep(0.4)
    [again] = await q.claim_due_items(conn, 5, 30_000, T0 + 20)
    assert again.id == handed.id and again.lease_id != handed.lease_id
    assert (again.run_version, again.failures) == (2, 1)


async def test_no_hand_off_for_a_later_call_or_a_call_in_a_concurrency_bucket(
    conn: AsyncConn,
) -> None:
    claimed = await _started_run(conn)
    history = await load_history(conn, RUN)
    later = ItemSpec(kind=ItemKind.EDGE, job_id="later", available_at=T0 + 60_000, run_id=RUN)
    limited = ItemSpec(
        kind=ItemKind.EDGE,
        job_id="limited",
        available_at=T0,
        run_id=RUN,
        concurrency=(("fn:limit", 1),),
    )
    decision = Decision([_step("a", T0 + 5)], [Enqueue(item=later), Enqueue(item=limited)])
    handed = await commit_transition(
        conn,
        Transition.on(RUN, history, decision, claimed, T0 + 5),
        lambda _p: None,
        q.Lease("handoff-lease", 30_000),
    )
    assert handed is None
    assert [c.job_id for c in await q.claim_due_items(conn, 5, 30_000, T0 + 10)] == ["limited"]


async def test_a_snapshot_is_used_only_at_the_version_the_claim_reports(conn: AsyncConn) -> None:
    cache = RunCache()
    claimed = await _started_run(conn)
    cache.put(Snapshot.of(RUN, await load_history(conn, RUN)))
    assert cache.get(RUN, claimed.run_version) is not None
    # Someone else (another process, an event) advances the run and enqueues its next call.
    async with conn.transaction():
        await append_history(conn, RUN, 1, [_step("a", T0 + 1)])
        nxt = ItemSpec(kind=ItemKind.EDGE, job_id="next", available_at=T0, run_id=RUN)
        await q.enqueue_items(conn, [nxt], T0)
    [fresh] = await q.claim_due_items(conn, 1, 30_000, T0 + 40_000)
    assert fresh.run_version == 2
    assert cache.get(RUN, fresh.run_version) is None


def test_the_run_cache_keeps_live_runs_only_and_evicts_the_least_recently_used() -> None:
    cache = RunCache(capacity=2)
    for run in ("a", "b", "c"):
        cache.put(Snapshot.of(run, [scheduled(run)]))
    assert cache.get("a", 1) is None and cache.get("c", 1) is not None
    finished = Snapshot.of("b", [scheduled("b")]).after([h.RunCompleted(at=T0, output=None)])
    cache.put(finished)
    assert cache.get("b", finished.version) is None and len(cache) == 1


def test_the_run_cache_is_bounded_in_bytes_not_only_in_runs() -> None:
    """Runs triggered by big events weigh what their events weigh: the cache keeps only as
    many as fit in its byte budget, and a run too heavy on its own is not kept at all."""
    big = {"data": {"blob": "x" * 100_000}}
    cache = RunCache(capacity=1000, max_bytes=350_000)
    for run in ("a", "b", "c", "d"):
        cache.put(Snapshot.of(run, [dataclasses.replace(scheduled(run), events=(big,))]))
    assert len(cache) == 3 and 300_000 < cache.bytes <= 350_000
    assert cache.get("a", 1) is None and cache.get("d", 1) is not None
    huge = {"data": {"blob": "x" * 300_000}}
    cache.put(Snapshot.of("e", [dataclasses.replace(scheduled("e"), events=(huge,))]))
    assert cache.get("e", 1) is None and len(cache) == 3
    for run in ("b", "c", "d"):
        cache.drop(run)
    assert cache.bytes == 0


async def test_the_trigger_index_sees_every_registry_write(conn: AsyncConn) -> None:
    index = TriggerIndex()

    async def version() -> int:
        cur = await conn.execute("SELECT version FROM registry_version")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    assert await index.functions_for_event(conn, "shop/order", await version()) == []
    now = "2026-11-21T00:00:00Z"
    await conn.execute(
        "INSERT INTO apps (id, name, url, created_at, updated_at)"
        " VALUES ('app', 'shop', '', %s, %s)",
        (now, now),
    )
    config = {
        "id": "shop-order",
        "name": "order",
        "triggers": [{"event": "shop/order"}],
        "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": URL}}},
    }
    await conn.execute(
        "INSERT INTO functions (id, app_id, slug, name, version, config, created_at, updated_at)"
        " VALUES ('fn', 'app', 'shop-order', 'order', 1, %s, %s, %s)",
        (Jsonb(config), now, now),
    )
    assert await index.functions_for_event(conn, "shop/order", await version()) == []
    # A trigger row alone (no change to the functions table) is a registry write too.
    await conn.execute(
        "INSERT INTO function_triggers (function_id, position, event_name)"
        " VALUES ('fn', 0, 'shop/order')"
    )
    [fn] = await index.functions_for_event(conn, "shop/order", await version())
    assert fn.slug == "shop-order"
    await conn.execute("UPDATE functions SET archived_at = now()")
    assert await index.functions_for_event(conn, "shop/order", await version()) == []


async def test_an_event_is_loaded_with_the_registry_version(conn: AsyncConn) -> None:
    from app.store.events import insert_events, received

    await insert_events(conn, [("01JEVT0000000000000000000B", {"name": "x", "data": {}})],
                        received(T0), T0, source="internal")  # fmt: skip
    loaded = await load_event(conn, "01JEVT0000000000000000000B")
    assert loaded is not None and isinstance(loaded[2], int)


async def _finished_event_items(conn: AsyncConn, internal_id: str) -> int:
    from app.store.events import insert_events, received
    from domain.lifecycle import FINISHED

    event = {"name": FINISHED, "data": {"run_id": RUN, "correlation_id": "c"}}
    await insert_events(conn, [(internal_id, event)], received(T0), T0, source="internal")
    cur = await conn.execute(
        "SELECT count(*) FROM queue_items WHERE payload->>'internal_id' = %s", (internal_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_function_finished_is_processed_only_when_something_listens(
    conn: AsyncConn, db_url: str
) -> None:
    # Nothing listens: the event is stored, and no processing item is made.
    assert await _finished_event_items(conn, "01JEVT00000000000000000001") == 0
    assert count_rows(db_url, "events", "internal_id = '01JEVT00000000000000000001'") == 1
    # An invoking parent's pause on function.finished makes it processed.
    await conn.execute(
        "INSERT INTO pauses (id, run_id, step_id, kind, event_name, match_key, expires_at,"
        " created_at) VALUES ('p', 'parent', 's', 'invoke', 'inngest/function.finished',"
        " 'data.correlation_id=\"c\"', now() + interval '1 hour', now())"
    )
    assert await _finished_event_items(conn, "01JEVT00000000000000000002") == 1
    await conn.execute("DELETE FROM pauses")
    # So does an active function triggered by it (here through a wildcard).
    now = "2026-11-21T00:00:00Z"
    await conn.execute(
        "INSERT INTO apps (id, name, url, created_at, updated_at)"
        " VALUES ('app', 'shop', '', %s, %s)",
        (now, now),
    )
    await conn.execute(
        "INSERT INTO functions (id, app_id, slug, name, version, config, created_at, updated_at)"
        " VALUES ('fn', 'app', 'audit', 'audit', 1, '{}', %s, %s)",
        (now, now),
    )
    await conn.execute(
        "INSERT INTO function_triggers (function_id, position, event_name)"
        " VALUES ('fn', 0, 'inngest/*')"
    )
    assert await _finished_event_items(conn, "01JEVT00000000000000000003") == 1


def _schedule_decision(run_id: str) -> Decision:
    start = ItemSpec(kind=ItemKind.START, job_id=f"start-{run_id}", available_at=T0, run_id=run_id)
    return Decision([scheduled(run_id)], [Enqueue(item=start)])


async def _event_item(conn: AsyncConn, job: str) -> q.ClaimedItem:
    await q.enqueue_items(conn, [ItemSpec(kind=ItemKind.EVENT, job_id=job, available_at=T0)], T0)
    [claimed] = await q.claim_due_items(conn, 1, 30_000, T0)
    return claimed


async def _schedule(
    conn: AsyncConn, run_id: str, event_item: q.ClaimedItem, handoff: q.Lease | None = None
) -> Scheduled:
    """Schedule ``run_id`` for the same event (one idempotency key) in one statement."""
    return await commit_schedule(
        conn,
        run_id=run_id,
        idempotency=("fn:event-1", run_id, q.to_dt(T0 + 86_400_000), q.to_dt(T0)),
        decision=_schedule_decision(run_id),
        event_item=event_item,
        now_ms=T0,
        handoff=handoff,
    )


async def test_scheduling_for_an_event_is_one_statement_gated_on_idempotency(
    conn: AsyncConn, db_url: str
) -> None:
    lease = q.Lease("handoff", 30_000)
    first = await _schedule(conn, RUN, await _event_item(conn, "event-a"), lease)
    assert first.scheduled and first.handoff is not None
    assert first.handoff.job_id == f"start-{RUN}" and first.handoff.run_version == 1
    assert count_rows(db_url, "run_history", "run_id = %s", (RUN,)) == 1
    assert count_rows(db_url, "runs", "run_id = %s", (RUN,)) == 1
    # The same event again (a redelivery): the key is taken, so only the ack is written.
    other = "01JRUN0000000000000000000B"
    again = await _schedule(conn, other, await _event_item(conn, "event-b"))
    assert not again.scheduled and again.handoff is None
    assert count_rows(db_url, "run_history", "run_id = %s", (other,)) == 0
    assert count_rows(db_url, "runs", "run_id = %s", (other,)) == 0
    assert count_rows(db_url, "queue_items", "run_id = %s", (other,)) == 0
    assert count_rows(db_url, "queue_items", "kind = 'event'") == 0


async def test_scheduling_under_a_lost_lease_writes_nothing(conn: AsyncConn, db_url: str) -> None:
    item = await _event_item(conn, "event-a")
    stale = dataclasses.replace(item, lease_id="someone-else")
    with pytest.raises(psycopg.Error) as raised:
        await _schedule(conn, RUN, stale)
    assert raised.value.sqlstate == q.LEASE_LOST
    for table in ("run_history", "runs", "run_idempotency"):
        assert count_rows(db_url, table) == 0, table
    assert count_rows(db_url, "queue_items") == 1
