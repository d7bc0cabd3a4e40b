"""The stats tailer: right totals, commit-order safety, exactly-once application, the loop.

The commit-order tests hold a transaction open (with real history rows in it) while a later
one commits, which is exactly when a tailer that remembers only a position loses rows.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from app.engine.transitions import decide_context, pause_key
from app.main import Services
from app.store import stats as stats_store
from app.store.db import AsyncConn, connect
from app.store.stats import load_function_stats, run_stats_tailer, stats_pass
from app.store.transitions import Transition, commit_transition
from domain import commands as c
from domain.decide import decide
from domain.ids import new_run_id
from domain.run import RunState
from projections.stats import DURATION_BOUNDS_MS, StatsRow, contribution, facts_of, percentile
from tests.integration.test_rebuild import (
    DONE,
    FUNCTIONS,
    Driver,
    StepClock,
    drain_stats,
    drive_corpus,
    services,  # noqa: F401 - the fixture
)

FN = FUNCTIONS[0]


async def _scheduled_total(conn: AsyncConn) -> int:
    found = await load_function_stats(conn, function_id=FN[0])
    return found[0].scheduled if found else 0


async def _schedule_in(tx: AsyncConn, svc: Services) -> str:
    """Append a RunScheduled inside ``tx``'s open transaction (as a savepoint of it)."""
    now = svc.clock.now_ms()
    run_id = new_run_id(now)
    command = c.ScheduleRun(
        run_id=run_id,
        function_id=FN[0],
        function_slug=FN[1],
        function_version=1,
        app_id="app",
        events=({"name": "stats/event", "data": {}},),
        event_ids=(f"E{run_id}",),
        idempotency_key=run_id,
        max_attempts=3,
    )
    decision = decide(RunState(), command, decide_context(svc, now))
    await commit_transition(tx, Transition.on(run_id, [], decision, None, now), pause_key)
    return run_id


async def _open_transaction(db_url: str) -> AsyncConn:
    tx = await connect(db_url, autocommit=False)
    await tx.execute("SELECT pg_current_xact_id()")  # take a transaction id now
    return tx


async def _position(conn: AsyncConn, run_id: str) -> int:
    cur = await conn.execute("SELECT position FROM run_history WHERE run_id = %s", (run_id,))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _poll_until(conn: AsyncConn, expected: int, seconds: float = 30) -> None:
    """Poll the tailer until the total is ``expected`` (the shared server may hold the
    watermark back for a moment with some other session's transaction)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await stats_pass(conn)
        if await _scheduled_total(conn) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"scheduled stayed at {await _scheduled_total(conn)}, not {expected}")


async def test_totals_agree_with_the_runs_that_happened(
    services: Services,  # noqa: F811
    conn: AsyncConn,
) -> None:
    assert isinstance(services.clock, StepClock)
    await drive_corpus(Driver(services, services.clock), runs=60)
    await drain_stats(conn)
    cur = await conn.execute("SELECT function_id, status, started_at IS NOT NULL FROM runs")
    runs = await cur.fetchall()
    cur = await conn.execute("SELECT count(*) FROM run_history WHERE type = 'StepErrored'")
    errored = await cur.fetchone()
    assert errored is not None and errored[0] > 0
    found = {s.function_id: s for s in await load_function_stats(conn)}
    for function_id, _ in FUNCTIONS:
        mine = [r for r in runs if r[0] == function_id]
        statuses = Counter(r[1] for r in mine)
        s = found[function_id]
        assert s.scheduled == len(mine)
        assert s.started == sum(1 for r in mine if r[2])
        assert (s.completed, s.failed, s.cancelled, s.skipped) == (
            statuses["Completed"],
            statuses["Failed"],
            statuses["Cancelled"],
            statuses["Skipped"],
        )
        assert s.avg_duration_ms is not None and s.avg_duration_ms > 0
        assert s.p50_duration_ms in DURATION_BOUNDS_MS
    assert sum(s.retries for s in found.values()) == errored[0]


async def test_a_lower_position_committed_after_a_higher_one_is_not_skipped(
    services: Services,  # noqa: F811
    conn: AsyncConn,
    db_url: str,
) -> None:
    held = await _open_transaction(db_url)
    try:
        first = await _schedule_in(held, services)  # lower position, still uncommitted
        later = await _open_transaction(db_url)
        second = await _schedule_in(later, services)
        await later.commit()  # higher position, committed first
        await later.close()
        assert await _position(conn, second) > 0
        # The committed row's transaction is newer than the open one: not safe yet.
        for _ in range(3):
            await stats_pass(conn)
        assert await _scheduled_total(conn) == 0
        await held.commit()
        assert await _position(conn, first) < await _position(conn, second)
        await _poll_until(conn, 2)
    finally:
        await held.close()


async def test_a_safe_row_past_an_open_transaction_is_read_and_the_open_one_later_too(
    services: Services,  # noqa: F811
    conn: AsyncConn,
    db_url: str,
) -> None:
    older = await _open_transaction(db_url)  # older transaction id …
    held = await _open_transaction(db_url)
    try:
        first = await _schedule_in(held, services)  # … newer id, lower position, left open
        second = await _schedule_in(older, services)  # older id, higher position
        await older.commit()
        await _poll_until(conn, 1)  # the committed row is consumed despite the open one
        cur = await conn.execute(
            "SELECT position FROM projection_checkpoints WHERE name = 'function_stats'"
        )
        checkpoint = await cur.fetchone()
        first_position = await _position(held, first)  # invisible to everyone else
        # A position checkpoint would now claim the still-invisible row was done.
        assert checkpoint is not None and checkpoint[0] == await _position(conn, second)
        assert first_position < checkpoint[0]
        await held.commit()
        await _poll_until(conn, 2)
    finally:
        await older.close()
        await held.close()


async def test_polling_again_or_failing_midway_never_counts_a_row_twice(
    services: Services,  # noqa: F811
    conn: AsyncConn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(services.clock, StepClock)
    driver = Driver(services, services.clock)
    for _ in range(3):
        run = await driver.schedule(FN)
        await driver.call(run, DONE)
    monkeypatch.setattr(stats_store, "SAVE_CHECKPOINT", "SELECT no_such_function(%s, %s, %s)")
    with pytest.raises(Exception, match="no_such_function"):
        for _ in range(600):  # until the rows are below the watermark and the pass writes
            await stats_pass(conn)
            await asyncio.sleep(0.05)
    assert await load_function_stats(conn) == []  # the stats rolled back with the checkpoint
    monkeypatch.undo()
    await drain_stats(conn)
    once = await load_function_stats(conn)
    await drain_stats(conn)
    assert await load_function_stats(conn) == once
    assert once[0].scheduled == 3 and once[0].completed == 3


async def test_concurrent_tailers_share_the_work_without_double_counting(
    services: Services,  # noqa: F811
    conn: AsyncConn,
    db_url: str,
) -> None:
    assert isinstance(services.clock, StepClock)
    driver = Driver(services, services.clock)
    for _ in range(40):
        await driver.schedule(FN)
    others = [await connect(db_url) for _ in range(3)]
    try:
        for _ in range(20):
            await asyncio.gather(*(stats_pass(o, limit=7) for o in others))
        await drain_stats(conn)
    finally:
        for o in others:
            await o.close()
    assert await _scheduled_total(conn) == 40


async def test_the_background_loop_follows_history_and_stops_on_request(
    services: Services,  # noqa: F811
    conn: AsyncConn,
) -> None:
    assert isinstance(services.clock, StepClock)
    task = asyncio.create_task(run_stats_tailer(services, interval=0.05))
    driver = Driver(services, services.clock)
    await driver.schedule(FN)
    for _ in range(600):
        if await _scheduled_total(conn) == 1:
            break
        await asyncio.sleep(0.05)
    assert await _scheduled_total(conn) == 1
    services.stop.set()
    await asyncio.wait_for(task, timeout=5)


def test_contribution_counts_durations_only_for_runs_that_started() -> None:
    from domain import history as h

    scheduled = h.RunScheduled(
        at=1_000,
        run_id="r",
        function_id="f",
        function_slug="s",
        function_version=1,
        app_id="a",
        events=(),
        event_ids=(),
        idempotency_key="k",
        max_attempts=1,
    )
    started = h.RunStarted(at=1_500)
    ended = h.RunCompleted(at=4_000, output=None)
    facts = facts_of([scheduled, started])
    assert facts is not None
    rows: list[Any] = [contribution(e, facts) for e in (scheduled, started, ended)]
    total = rows[0] + rows[1] + rows[2]
    assert isinstance(total, StatsRow)
    assert (total.scheduled, total.started, total.completed) == (1, 1, 1)
    assert (total.queue_delay_ms, total.duration_ms, total.duration_count) == (500, 2_500, 1)
    assert percentile(total.duration_histogram, 0.5) == 2_500
    never = facts_of([scheduled])
    assert never is not None
    cancelled = contribution(h.RunCancelled(at=2_000, reason="x"), never)
    assert cancelled is not None and cancelled.cancelled == 1 and cancelled.duration_count == 0
