"""A wait recorded while its matching event was already being processed is still resumed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.clock import SystemClock
from app.engine.pauses import catch_up_wait
from app.engine.transitions import run_command
from app.main import Services
from app.settings import Settings
from app.store.events import insert_events
from app.store.history import load_history
from app.store.queue import to_dt
from domain import commands as c
from domain.effects import CreatePause
from domain.ids import new_run_id, new_ulid
from domain.opcodes import OpsReported, parse_ops
from domain.run import fold


@pytest.fixture
async def services(db_url: str) -> AsyncIterator[Services]:
    s = Services(settings=Settings(run_workers=False), database_url=db_url, clock=SystemClock())
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def _waiting_run(services: Services, key: str) -> tuple[str, CreatePause]:
    run_id = new_run_id()
    now = services.clock.now_ms()
    trigger = {"name": "app/start", "data": {"id": key}, "id": "t", "ts": now, "user": {}}
    await run_command(
        services,
        run_id,
        c.ScheduleRun(
            run_id=run_id,
            function_id="fn",
            function_slug="app-fn",
            function_version=1,
            app_id="app",
            events=(trigger,),
            event_ids=(new_ulid(),),
            idempotency_key=run_id,
            max_attempts=3,
        ),
    )
    wait = OpsReported(
        ops=parse_ops(
            [
                {
                    "id": "w",
                    "op": "WaitForEvent",
                    "name": "app/reply",
                    "opts": {"if": "async.data.id == event.data.id", "timeout": "1h"},
                }
            ]
        ),
        request_version=2,
    )
    call = c.Call(step_id="step", attempt=0, max_attempts=3, started_at=now)
    decision = await run_command(services, run_id, c.HandleCallResult(call=call, result=wait))
    assert decision is not None
    [pause] = [e for e in decision.effects if isinstance(e, CreatePause)]
    return run_id, pause


async def _ingest(services: Services, data: dict[str, object], received_ms: int) -> None:
    event = {"name": "app/reply", "data": data, "ts": received_ms}
    async with services.db.connection() as conn, conn.transaction():
        await insert_events(conn, [(new_ulid(), event)], to_dt(received_ms), received_ms)


async def test_an_event_that_raced_the_pause_is_picked_up_after_the_wait_commits(
    services: Services,
) -> None:
    run_id, pause = await _waiting_run(services, "42")
    await _ingest(services, {"id": "other"}, pause.created_at + 1)
    await _ingest(services, {"id": "42", "n": 1}, pause.created_at + 2)
    await catch_up_wait(services, pause)
    async with services.db.connection() as conn:
        state = fold(await load_history(conn, run_id))
    assert state.steps["w"]["data"] == {"id": "42", "n": 1}


async def test_an_event_received_before_the_wait_began_is_not_picked_up(
    services: Services,
) -> None:
    run_id, pause = await _waiting_run(services, "7")
    await _ingest(services, {"id": "7"}, pause.created_at - 50)
    await catch_up_wait(services, pause)
    async with services.db.connection() as conn:
        state = fold(await load_history(conn, run_id))
    assert "w" not in state.steps and state.waiting == {"w": "wait"}
