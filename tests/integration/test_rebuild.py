"""``projections rebuild`` reproduces exactly what the live path wrote.

A corpus of runs with mixed outcomes (completed, failed, cancelled, retried, parallel, waiting
for events and signals, sleeping, skipped, never started) is driven through the real domain
with ``run_command`` — so ``commit_transition`` writes the runs view as in production — and the
stats tailer is drained.
Then both views are snapshotted, rebuilt from history, and compared row by row.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.engine.transitions import run_command
from app.main import Services
from app.settings import Settings
from app.store.db import AsyncConn
from app.store.stats import stats_pass
from domain import commands as c
from domain import metadata as md
from domain.ids import new_run_id
from domain.opcodes import (
    CallFailed,
    CallResult,
    FunctionReturned,
    Op,
    Opcode,
    OpsReported,
)
from projections.rebuild import rebuild

BASE_MS = 1_790_000_000_000
FUNCTIONS = (
    ("7d0c6a10-0000-4000-8000-000000000001", "corpus-app-alpha"),
    ("7d0c6a10-0000-4000-8000-000000000002", "corpus-app-beta"),
    ("7d0c6a10-0000-4000-8000-000000000003", "corpus-app-gamma"),
)
APP_ID = "7d0c6a10-0000-4000-8000-0000000000aa"


class StepClock:
    """A clock tests move by hand; every read advances it a little, as real time would."""

    def __init__(self, start: int = BASE_MS) -> None:
        self.ms = start

    def now_ms(self) -> int:
        self.ms += 7
        return self.ms


class Driver:
    """Drives runs through ``run_command`` the way the worker's handlers do."""

    def __init__(self, services: Services, clock: StepClock) -> None:
        self.services = services
        self.clock = clock

    async def schedule(
        self,
        function: tuple[str, str],
        data: dict[str, Any] | None = None,
        *,
        max_attempts: int = 3,
        skip_reason: str | None = None,
        name: str = "corpus/event",
    ) -> str:
        run_id = new_run_id(self.clock.now_ms())
        event = {"name": name, "data": data or {}, "id": f"evt-{run_id}", "ts": self.clock.ms}
        await run_command(
            self.services,
            run_id,
            c.ScheduleRun(
                run_id=run_id,
                function_id=function[0],
                function_slug=function[1],
                function_version=1,
                app_id=APP_ID,
                events=(event,),
                event_ids=(f"E{run_id}",),
                idempotency_key=run_id,
                max_attempts=max_attempts,
                skip_reason=skip_reason,
            ),
        )
        return run_id

    async def call(
        self, run_id: str, result: CallResult, *, step_id: str = "step", attempt: int = 0
    ) -> None:
        started = self.clock.now_ms()
        self.clock.ms += 250  # the SDK call takes a while
        call = c.Call(step_id=step_id, attempt=attempt, max_attempts=3, started_at=started)
        await run_command(self.services, run_id, c.HandleCallResult(call=call, result=result))

    async def command(self, run_id: str, command: c.Command) -> None:
        await run_command(self.services, run_id, command)


def ops(*items: Op) -> OpsReported:
    return OpsReported(ops=items, request_version=1)


def step(step_id: str, data: Any = None) -> Op:
    return Op(id=step_id, op=Opcode.STEP_RUN, name=step_id, data=data, has_data=True)


def planned(step_id: str) -> Op:
    return Op(id=step_id, op=Opcode.STEP_PLANNED, name=step_id)


def step_error(step_id: str) -> Op:
    return Op(id=step_id, op=Opcode.STEP_ERROR, name=step_id, error={"name": "E", "message": "x"})


DONE = FunctionReturned(output={"ok": True}, request_version=1)


async def _completed(d: Driver, run: str, i: int) -> None:
    # Metadata on the step and from the API: history the views must pass over unchanged.
    note = {"kind": "userland.note", "op": "set", "values": {"i": i}, "scope": "step"}
    await d.call(run, ops(replace(step("a", i), metadata=(note,))))
    update = md.parse_update(note)
    await d.command(run, c.AddMetadata(target=md.Target(), updates=(update,)))
    await d.call(run, FunctionReturned(output={"i": i, "nested": [1, None]}))


async def _failed(d: Driver, run: str, i: int) -> None:
    await d.call(run, CallFailed(error={"name": "Boom", "message": str(i)}, retryable=False))


async def _retried(d: Driver, run: str, i: int) -> None:
    await d.call(run, ops(step_error("a")), step_id="a", attempt=0)
    await d.call(run, ops(step("a", "second time")), step_id="a", attempt=1)
    await d.call(run, DONE)


async def _exhausted(d: Driver, run: str, i: int) -> None:
    for attempt in range(3):
        await d.call(run, CallFailed(error={"name": "Flaky", "message": "no"}), attempt=attempt)


async def _parallel(d: Driver, run: str, i: int) -> None:
    await d.call(run, ops(planned("p1"), planned("p2"), planned("p3")))
    for step_id in ("p1", "p2", "p3"):
        await d.call(run, ops(step(step_id, step_id)), step_id=step_id)
    if i % 2:
        await d.call(run, DONE)


async def _waiting(d: Driver, run: str, i: int) -> None:
    wait = Op(id="w", op=Opcode.WAIT_FOR_EVENT, name="corpus/ready", opts={"timeout": "1h"})
    await d.call(run, ops(wait))
    if i % 2:
        event = {"name": "corpus/ready", "data": {"i": i}}
        await d.command(run, c.ResumeWait(step_id="w", event=event, event_id=f"R{run}"))
        await d.call(run, DONE)


async def _signalled(d: Driver, run: str, i: int) -> None:
    signal = f"corpus-{run}"
    wait = Op(id="g", op=Opcode.WAIT_FOR_SIGNAL, name=signal, opts={"signal": signal})
    await d.call(run, ops(wait))
    if i % 2:
        await d.command(run, c.ResumeSignal(step_id="g", signal=signal, data={"i": i}))
        await d.call(run, DONE)


async def _sleeping(d: Driver, run: str, i: int) -> None:
    await d.call(run, ops(Op(id="s", op=Opcode.SLEEP, name="nap", opts={"duration": "1h"})))
    if i % 2:
        await d.command(run, c.WakeSleep(step_id="s"))
        await d.call(run, DONE)


async def _cancelled(d: Driver, run: str, i: int) -> None:
    if i % 2:
        await d.call(run, ops(step("a", i)))
    await d.command(run, c.CancelRun(reason="corpus"))


async def _untouched(d: Driver, run: str, i: int) -> None:
    """Scheduled and never started (still queued)."""


SCENARIOS: tuple[Callable[[Driver, str, int], Any], ...] = (
    _completed,
    _failed,
    _retried,
    _exhausted,
    _parallel,
    _waiting,
    _signalled,
    _sleeping,
    _cancelled,
    _untouched,
)


async def drive_corpus(driver: Driver, runs: int = 220) -> dict[str, str]:
    """``runs`` runs of every scenario (plus skipped ones); run id -> scenario name."""
    made: dict[str, str] = {}
    for i in range(runs):
        function = FUNCTIONS[i % len(FUNCTIONS)]
        if i % 20 == 19:
            made[await driver.schedule(function, {"i": i}, skip_reason="singleton")] = "skipped"
            continue
        scenario = SCENARIOS[i % len(SCENARIOS)]
        run_id = await driver.schedule(function, {"i": i}, max_attempts=3)
        await scenario(driver, run_id, i)
        made[run_id] = scenario.__name__.strip("_")
        driver.clock.ms += 97_000  # spread runs over hours so stats have several buckets
    return made


async def drain_stats(conn: AsyncConn, *, attempts: int = 600) -> None:
    """Poll the stats tailer until it has consumed every history row."""
    for _ in range(attempts):
        consumed = await stats_pass(conn, limit=500)
        cur = await conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM run_history h"
            " LEFT JOIN projection_checkpoints c ON c.name = %s"
            " WHERE c.name IS NULL OR (h.tx_id, h.position) > (c.tx_id, c.position))",
            ("function_stats",),
        )
        row = await cur.fetchone()
        if consumed == 0 and row is not None and row[0]:
            return
        if consumed == 0:
            # Another transaction on the server holds the watermark back; wait for it.
            await asyncio.sleep(0.05)
    raise AssertionError("the stats tailer did not catch up")


async def snapshot(conn: AsyncConn, table: str, order: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
    return [tuple(r) for r in await cur.fetchall()]


def wait_until_committed_rows_are_safe(url: str, timeout: float = 30) -> None:
    """Wait until every committed history row is below the watermark (the server is shared,
    so another session's open transaction may hold it back for a moment)."""
    import time

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as sync:
        while time.monotonic() < deadline:
            row = sync.execute(
                "SELECT coalesce(max(tx_id), 0)"
                " < pg_snapshot_xmin(pg_current_snapshot())::text::bigint FROM run_history"
            ).fetchone()
            if row is not None and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("history rows stayed above the watermark")


@pytest.fixture
async def services(db_url: str) -> AsyncIterator[Services]:
    settings = Settings(run_workers=False, retry_interval=1.0)
    live = Services(settings=settings, database_url=db_url, clock=StepClock())
    await live.start()
    try:
        yield live
    finally:
        await live.close()


async def test_rebuild_reproduces_the_live_runs_view_and_stats_row_by_row(
    services: Services, conn: AsyncConn
) -> None:
    assert isinstance(services.clock, StepClock)
    made = await drive_corpus(Driver(services, services.clock))
    assert len(made) >= 200
    await drain_stats(conn)
    runs_before = await snapshot(conn, "runs", "run_id")
    stats_before = await snapshot(conn, "function_stats", "function_id, hour")
    statuses = {r[0]: r[5] for r in runs_before}
    assert set(statuses) == set(made)
    assert {"Completed", "Failed", "Cancelled", "Running", "Queued", "Skipped"} <= set(
        statuses.values()
    )
    assert len(stats_before) > len(FUNCTIONS)  # several hours per function
    cur = await conn.execute("SELECT count(*) FROM run_history WHERE type = 'MetadataAdded'")
    metadata_rows = await cur.fetchone()
    assert metadata_rows is not None and metadata_rows[0] > 0

    report = await rebuild(conn, chunk=37)

    assert report.runs == len(made)
    assert await snapshot(conn, "runs", "run_id") == runs_before
    assert await snapshot(conn, "function_stats", "function_id, hour") == stats_before
    # The tailer's checkpoint now sits past everything the rebuild counted: polling adds nothing.
    assert await stats_pass(conn) == 0
    assert await snapshot(conn, "function_stats", "function_id, hour") == stats_before


async def test_rebuild_repairs_a_damaged_runs_view(services: Services, conn: AsyncConn) -> None:
    assert isinstance(services.clock, StepClock)
    driver = Driver(services, services.clock)
    runs = [await driver.schedule(FUNCTIONS[0], {"i": i}) for i in range(5)]
    await driver.call(runs[0], DONE)
    before = await snapshot(conn, "runs", "run_id")
    await conn.execute("DELETE FROM runs WHERE run_id = %s", (runs[1],))
    await conn.execute("UPDATE runs SET status = 'Failed' WHERE run_id = %s", (runs[0],))
    await conn.execute(
        "INSERT INTO runs SELECT 'stray' || run_id, function_id, function_slug, function_version,"
        " app_id, status, queued_at, started_at, ended_at, event_ids, event_name, batch_id,"
        " cron, original_run_id, output FROM runs WHERE run_id = %s",
        (runs[2],),
    )
    await rebuild(conn)
    assert await snapshot(conn, "runs", "run_id") == before


async def test_live_transitions_after_a_rebuild_keep_the_view_consistent(
    services: Services, conn: AsyncConn
) -> None:
    assert isinstance(services.clock, StepClock)
    driver = Driver(services, services.clock)
    run = await driver.schedule(FUNCTIONS[1], {"x": 1})
    await rebuild(conn)
    await driver.call(run, DONE)
    await drain_stats(conn)
    live_runs = await snapshot(conn, "runs", "run_id")
    live_stats = await snapshot(conn, "function_stats", "function_id, hour")
    await rebuild(conn)
    assert await snapshot(conn, "runs", "run_id") == live_runs
    assert await snapshot(conn, "function_stats", "function_id, hour") == live_stats


def test_the_cli_rebuilds_and_reports(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as sync:
        sync.execute(
            "INSERT INTO run_history (run_id, version, type, schema_version, payload) VALUES "
            "(%s, 1, 'RunScheduled', 1, %s)",
            (
                "01JD0000000000000000000000",
                Jsonb(
                    {
                        "at": BASE_MS,
                        "run_id": "01JD0000000000000000000000",
                        "function_id": FUNCTIONS[0][0],
                        "function_slug": FUNCTIONS[0][1],
                        "function_version": 1,
                        "app_id": APP_ID,
                        "events": [{"name": "cli/event", "data": {}}],
                        "event_ids": ["E1"],
                        "idempotency_key": "k",
                        "max_attempts": 3,
                    }
                ),
            ),
        )
    wait_until_committed_rows_are_safe(db_url)
    result = subprocess.run(
        [sys.executable, "-m", "app", "projections", "rebuild", "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilt the runs view (1 runs)" in result.stdout
    with psycopg.connect(db_url) as sync:
        row = sync.execute("SELECT status, event_name FROM runs").fetchone()
        stats = sync.execute("SELECT function_id, scheduled FROM function_stats").fetchall()
    assert row == ("Queued", "cli/event")
    assert stats == [(FUNCTIONS[0][0], 1)]
