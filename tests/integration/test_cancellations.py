"""Bulk cancellations: exactly the covered unfinished runs are cancelled, later runs are caught
by ``cancelled_by_rule``, and the REST API validates, lists and deletes rules as upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.engine import cancellations as engine
from app.engine.cancellations import cancelled_by_rule
from app.main import Services, create_app
from app.settings import Settings
from app.store import cancellations as repo
from app.store.history import load_history
from app.store.queue import to_dt
from domain.ids import ENV_ID, new_ulid
from domain.opcodes import Op, Opcode
from domain.run import RunState, fold
from tests.integration.test_rebuild import BASE_MS, DONE, Driver, StepClock, ops, step

HOUR = 3_600_000
NOW = BASE_MS + 10 * HOUR
APP = ("0b6f7c3e-0000-4000-8000-00000000a001", "shop")
CHARGE = ("0b6f7c3e-0000-4000-8000-00000000f001", "shop-charge")
REFUND = ("0b6f7c3e-0000-4000-8000-00000000f002", "shop-refund")

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    app = create_app(Settings(run_workers=False), db_url, clock=StepClock(NOW))
    async with AsyncTestClient(app) as c:
        services = _services(c)
        async with services.db.connection() as conn:
            await conn.execute(
                "INSERT INTO apps (id, name, url, created_at, updated_at)"
                " VALUES (%s, %s, 'http://shop', now(), now())",
                APP,
            )
            for fn_id, slug in (CHARGE, REFUND):
                await conn.execute(
                    "INSERT INTO functions (id, app_id, slug, name, version, config,"
                    " created_at, updated_at) VALUES (%s, %s, %s, %s, 1, '{}', now(), now())",
                    (fn_id, APP[0], slug, slug),
                )
        yield c


def _services(client: Client) -> Services:
    services: Services = client.app.state.services
    return services


def _iso(ms: int) -> str:
    return to_dt(ms).isoformat().replace("+00:00", "Z")


class Runs:
    """Schedules runs at chosen queue times through the real domain."""

    def __init__(self, client: Client) -> None:
        services = _services(client)
        assert isinstance(services.clock, StepClock)
        self.clock = services.clock
        self.driver = Driver(services, self.clock)
        self.conn_services = services

    async def at(self, hours_ago: float, fn: tuple[str, str] = CHARGE, **data: Any) -> str:
        self.clock.ms = int(NOW - hours_ago * HOUR)
        run = await self.driver.schedule(fn, data, name="shop/order")
        self.clock.ms = NOW
        return run

    async def state(self, run_id: str) -> RunState:
        async with self.conn_services.db.connection() as conn:
            return fold(await load_history(conn, run_id))


async def _post(client: Client, **body: Any) -> Any:
    response = await client.post("/v1/cancellations", json=body)
    return response


async def test_creating_a_rule_cancels_exactly_the_covered_unfinished_runs(
    client: Client,
) -> None:
    runs = Runs(client)
    before_window = await runs.at(5)
    queued = await runs.at(3)
    running = await runs.at(2.5)
    await runs.driver.call(running, ops(step("a", 1)))
    sleeping = await runs.at(2.2)
    await runs.driver.call(sleeping, ops(Op(id="s", op=Opcode.SLEEP, opts={"duration": "1d"})))
    finished = await runs.at(2)
    await runs.driver.call(finished, DONE)
    vip = await runs.at(1.5, vip=True)
    other_function = await runs.at(1.5, REFUND)
    after_window = await runs.at(0.5)

    response = await _post(
        client,
        app_id="shop",
        function_id="shop-charge",
        started_after=_iso(NOW - 4 * HOUR),
        started_before=_iso(NOW - HOUR),
        **{"if": "event.data.vip != true"},
    )
    assert response.status_code == 200, response.text
    rule = response.json()["data"]
    assert rule["function_id"] == "shop-charge"
    assert rule["function_internal_id"] == CHARGE[0]
    assert rule["app_id"] == APP[0] and rule["environment_id"] == ENV_ID
    assert rule["if"] == "event.data.vip != true"
    assert rule["started_before"] == _iso(NOW - HOUR)
    assert (rule["kind"], rule["cause"], rule["name"]) == ("bulk_run", "API", None)
    assert {"id", "created_at", "started_after", "account_id", "queue_name"} <= set(rule)

    everything = (before_window, queued, running, sleeping, finished, vip, other_function)
    statuses = {}
    for run in (*everything, after_window):
        status = (await runs.state(run)).status
        assert status is not None
        statuses[run] = status.value
    assert {run for run, s in statuses.items() if s == "Cancelled"} == {queued, running, sleeping}
    assert statuses[finished] == "Completed"
    async with _services(client).db.connection() as conn:
        history = await load_history(conn, running)
        cur = await conn.execute(
            "SELECT count(*) FROM queue_items WHERE run_id = ANY(%s)", ([queued, sleeping],)
        )
        left = await cur.fetchone()
    assert getattr(history[-1], "reason", "") == f"cancelled by bulk cancellation {rule['id']}"
    assert left == (0,)  # the cancelled runs' start and sleep items are gone


async def test_runs_scheduled_later_in_the_window_are_caught_before_their_next_call(
    client: Client,
) -> None:
    runs = Runs(client)
    response = await _post(
        client,
        app_id="shop",
        function_id="charge",  # the SDK's id inside the app
        started_before=_iso(NOW + 3_000),  # reaches (a little) into the future
        started_after=_iso(NOW - HOUR),
        **{"if": "event.data.amount > 100"},
    )
    assert response.status_code == 200, response.text
    late = await runs.at(0, amount=500)  # scheduled after the sweep, inside the window
    small = await runs.at(0, amount=5)
    too_early = await runs.at(2, amount=500)
    elsewhere = await runs.at(0, REFUND, amount=500)
    services = _services(client)
    async with services.db.connection() as conn:
        assert await cancelled_by_rule(conn, await runs.state(late))
        for run in (small, too_early, elsewhere):
            assert not await cancelled_by_rule(conn, await runs.state(run)), run
        assert not await cancelled_by_rule(conn, RunState())
    deleted = await client.delete(f"/v1/cancellations/{response.json()['data']['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["data"] == {"ok": True}
    async with services.db.connection() as conn:
        assert not await cancelled_by_rule(conn, await runs.state(late))


async def test_other_processes_rules_are_seen_within_the_cache_interval(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "CACHE_SECONDS", 0.2)
    runs = Runs(client)
    run = await runs.at(1)
    state = await runs.state(run)
    services = _services(client)
    async with services.db.connection() as conn:
        assert not await cancelled_by_rule(conn, state)  # caches "no rules"
        await repo.insert_cancellation(  # as another Stepwell process would
            conn,
            repo.Cancellation(
                id=new_ulid(),
                app_id=APP[0],
                function_id=CHARGE[0],
                function_slug=CHARGE[1],
                started_after=None,
                started_before=to_dt(NOW),
                expression=None,
                name=None,
                created_at=to_dt(NOW),
            ),
        )
        assert not await cancelled_by_rule(conn, state)  # still cached
        await asyncio.sleep(0.25)
        assert await cancelled_by_rule(conn, state)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            {},
            400,
            "app_id is required\nfunction_id is required\nstarted_before is required",
        ),
        (
            {"app_id": "shop", "function_id": "shop-charge", "started_before": _iso(NOW + HOUR)},
            400,
            "started_before must be in the past",
        ),
        (
            {
                "app_id": "shop",
                "function_id": "shop-charge",
                "started_before": _iso(NOW - HOUR),
                "started_after": _iso(NOW),
            },
            400,
            "started_after must be before started_before",
        ),
        (
            {
                "app_id": "shop",
                "function_id": "shop-charge",
                "started_before": _iso(NOW),
                "if": "event.data.x ==",
            },
            400,
            "invalid expression: syntax error",
        ),
        (
            {"app_id": "shop", "function_id": "nope", "started_before": _iso(NOW)},
            404,
            "function not found",
        ),
        (
            {"app_id": "other-app", "function_id": "shop-charge", "started_before": _iso(NOW)},
            404,
            "function not found",
        ),
        ({"app_id": 5}, 400, ""),
    ],
)
async def test_invalid_requests_are_refused_and_store_nothing(
    client: Client, body: dict[str, Any], status: int, error: str
) -> None:
    response = await _post(client, **body)
    assert response.status_code == status, response.text
    envelope = response.json()
    assert envelope["status"] == status
    assert envelope["error"].startswith(error), envelope
    listed = await client.get("/v1/cancellations")
    assert listed.json()["data"] == []


async def test_malformed_json_is_a_400(client: Client) -> None:
    response = await client.post(
        "/v1/cancellations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["status"] == 400


async def test_rules_are_listed_oldest_first_and_deleted_once(client: Client) -> None:
    made = []
    for fn in ("shop-charge", CHARGE[0], "refund"):
        response = await _post(client, app_id="shop", function_id=fn, started_before=_iso(NOW))
        assert response.status_code == 200, response.text
        made.append(response.json()["data"])
    listed = await client.get("/v1/cancellations")
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["data"]] == [r["id"] for r in made]
    assert [r["function_id"] for r in made] == ["shop-charge", "shop-charge", "shop-refund"]
    assert made[0]["started_after"] is None and made[0]["if"] is None

    first = made[0]["id"]
    assert (await client.delete(f"/v1/cancellations/{first}")).json()["data"] == {"ok": True}
    again = await client.delete(f"/v1/cancellations/{first}")
    assert again.status_code == 404 and again.json()["error"] == "Cancellation not found"
    bad = await client.delete("/v1/cancellations/nope")
    assert bad.status_code == 400 and bad.json()["error"] == "Invalid cancellation ID"
    remaining = (await client.get("/v1/cancellations")).json()["data"]
    assert [r["id"] for r in remaining] == [r["id"] for r in made[1:]]
