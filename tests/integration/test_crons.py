"""Cron ticks: fire times, and exactly one run per tick with two instances on one database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
import pytest

from app.engine.crons import ensure_ticks, handle_cron, next_fire
from app.main import Services
from app.registry.register import register_app
from app.settings import Settings
from app.store.queue import claim_due_items
from domain.queue import ItemKind
from tests.conftest import count_rows

START = datetime(2027, 3, 1, 11, 59, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.ms = int(at.timestamp() * 1000)

    def now_ms(self) -> int:
        return self.ms


def _register_body(cron: str) -> bytes:
    return json.dumps(
        {
            "appName": "cron-app",
            "url": "http://127.0.0.1:9/api",
            "sdk": "py:v0.5.19",
            "framework": "fast_api",
            "v": "0.1",
            "deployType": "ping",
            "functions": [
                {
                    "id": "cron-app-tick",
                    "name": "tick",
                    "triggers": [{"cron": cron}],
                    "steps": {
                        "step": {
                            "id": "step",
                            "name": "step",
                            "runtime": {
                                "type": "http",
                                "url": "http://127.0.0.1:9/api?fnId=cron-app-tick&stepId=step",
                            },
                        }
                    },
                }
            ],
        }
    ).encode()


@pytest.fixture
async def instances(db_url: str) -> AsyncIterator[tuple[Services, Services, FakeClock]]:
    clock = FakeClock(START)
    a = Services(settings=Settings(run_workers=False), database_url=db_url, clock=clock)
    b = Services(settings=Settings(run_workers=False), database_url=db_url, clock=clock)
    await a.start()
    await b.start()
    try:
        yield a, b, clock
    finally:
        await a.close()
        await b.close()


def test_fire_times_follow_cron_weekdays_and_time_zones() -> None:
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert next_fire("0 9 * * 1", saturday) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert next_fire("0 0 * * 0", saturday) == datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    paris = next_fire("TZ=Europe/Paris 0 9 * * 1-5", saturday)
    assert paris == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert next_fire("*/15 * * * *", saturday) == datetime(2026, 11, 21, 12, 15, tzinfo=UTC)


async def _work(services: Services) -> None:
    async with services.db.connection() as conn:
        items = await claim_due_items(conn, 10, 30_000, services.clock.now_ms())
    for item in items:
        if item.kind is ItemKind.CRON:  # the runs' own start items are not under test here
            await handle_cron(services, item)


async def test_two_instances_fire_a_per_minute_cron_exactly_once_per_minute(
    instances: tuple[Services, Services, FakeClock], db_url: str
) -> None:
    a, b, clock = instances
    result = await register_app(a, _register_body("* * * * *"), {})
    assert result.status == 200, result.body
    minutes = 5
    for _ in range(minutes * 6):  # both instances run every 10 s of simulated time
        await asyncio.gather(ensure_ticks(a), ensure_ticks(b))
        await asyncio.gather(_work(a), _work(b))
        clock.ms += 10_000
    assert count_rows(db_url, "runs") == minutes
    assert count_rows(db_url, "events", "name = 'inngest/scheduled.timer'") == minutes
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT data->>'scheduledAt', cron FROM events e JOIN runs r "
            "ON r.event_ids[1] = e.internal_id ORDER BY 1"
        ).fetchall()
    assert [r[0] for r in rows] == [
        f"2027-03-01T{12 + (m // 60):02d}:{m % 60:02d}:00Z" for m in range(minutes)
    ]
    assert {r[1] for r in rows} == {"* * * * *"}


async def test_resyncing_with_a_new_schedule_ends_the_old_chain(
    instances: tuple[Services, Services, FakeClock], db_url: str
) -> None:
    a, _b, clock = instances
    await register_app(a, _register_body("* * * * *"), {})
    await ensure_ticks(a)
    await register_app(a, _register_body("0 * * * *"), {})  # hourly from now on
    for _ in range(6 * 5):
        await ensure_ticks(a)
        await _work(a)
        clock.ms += 10_000
    assert count_rows(db_url, "runs") == 1  # only 12:00 (hourly) fired in these minutes
