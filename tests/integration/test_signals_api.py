"""``POST /v1/signals`` and signal pauses on a real database: resuming, the conflict rule,
bad input, concurrent senders, timeouts, self-hosted auth, and what readers see.

Runs are driven with ``run_command`` as the worker's handlers drive them (no SDK here; the
e2e tests cover the TypeScript SDK), and the API is called over the in-process ASGI client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.engine.signals import send_signal
from app.engine.transitions import run_command
from app.graphql import PATH as GQL_PATH
from app.main import Services, create_app
from app.settings import Settings
from app.store.history import load_history
from domain import commands as c
from domain import history as h
from domain.ids import new_run_id, new_ulid
from domain.opcodes import OpsReported, parse_ops
from domain.parking import SIGNAL_CONFLICT
from domain.run import RunState, RunStatus, fold

Client = AsyncTestClient[Litestar]
KEY = "signkey-test-abcd1234"


def _app(db_url: str, **settings: Any) -> Litestar:
    base: dict[str, Any] = {"run_workers": False, "discovery": False, "poll": False}
    return create_app(Settings(**{**base, **settings}), db_url)


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(_app(db_url)) as c:
        yield c


def _services(client: Client) -> Services:
    services: Services = client.app.state.services
    return services


async def _schedule(services: Services) -> str:
    run_id = new_run_id()
    trigger = {"name": "app/start", "data": {}, "id": run_id, "ts": services.clock.now_ms()}
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
    return run_id


def _wait_op(signal: str, timeout: str = "1h", conflict: str = "fail") -> c.HandleCallResult:
    op = {
        "id": "w",
        "op": "WaitForSignal",
        "name": signal,
        "displayName": "wait-for-it",
        "opts": {"signal": signal, "timeout": timeout, "conflict": conflict},
    }
    call = c.Call(step_id="step", attempt=0, max_attempts=3, started_at=0)
    return c.HandleCallResult(call=call, result=OpsReported(ops=parse_ops([op]), request_version=2))


async def _waiting_run(services: Services, signal: str, **opts: str) -> str:
    run_id = await _schedule(services)
    await run_command(services, run_id, _wait_op(signal, **opts))
    return run_id


async def _state(services: Services, run_id: str) -> RunState:
    async with services.db.connection() as conn:
        return fold(await load_history(conn, run_id))


async def _history_rows(services: Services) -> int:
    async with services.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM run_history")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _pauses(services: Services) -> list[tuple[Any, ...]]:
    async with services.db.connection() as conn:
        cur = await conn.execute("SELECT run_id, signal FROM pauses ORDER BY created_at")
        return list(await cur.fetchall())


async def _queue(services: Services, run_id: str) -> list[str]:
    async with services.db.connection() as conn:
        cur = await conn.execute(
            "SELECT kind FROM queue_items WHERE run_id = %s ORDER BY kind", (run_id,)
        )
        return [r[0] for r in await cur.fetchall()]


async def test_a_signal_resumes_the_waiting_run_with_its_data(client: Client) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "order-1")
    assert "pause-timeout" in await _queue(services, run_id)

    response = await client.post("/v1/signals", json={"signal": "order-1", "data": {"ok": 1}})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == {"run_id": run_id} and set(body["metadata"]) == {
        "fetched_at",
        "cached_until",
    }
    state = await _state(services, run_id)
    assert state.steps["w"] == {"data": {"signal": "order-1", "data": {"ok": 1}}}
    assert state.waiting == {}
    assert await _pauses(services) == []
    queued = await _queue(services, run_id)  # the timeout went; the SDK is called again
    assert "pause-timeout" not in queued and "edge" in queued


async def test_a_signal_without_data_gives_the_step_null_data(client: Client) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "bare")
    response = await client.post("/v1/signals", json={"signal": "bare"})
    assert response.status_code == 200, response.text
    state = await _state(services, run_id)
    assert state.steps["w"] == {"data": {"signal": "bare", "data": None}}


async def test_a_signal_nobody_waits_on_is_404_and_changes_nothing(client: Client) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "known")
    before = await _history_rows(services)

    response = await client.post("/v1/signals", json={"signal": "unknown", "data": 1})

    assert response.status_code == 404
    assert response.json() == {"error": "No signal found", "status": 404, "data": None}
    assert await _history_rows(services) == before
    assert await _pauses(services) == [(run_id, "known")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "JSON is malformed"),
        (b"[1, 2]", "Validation failed"),
        (b'{"signal": 5}', "Validation failed"),
        (b"{}", "Invalid signal data: signal must be a non-empty string"),
        (b'{"signal": "", "data": 1}', "Invalid signal data: signal must be a non-empty string"),
        (b"null", ""),
    ],
)
async def test_a_malformed_body_is_400_in_the_envelope_and_changes_nothing(
    client: Client, body: bytes, message: str
) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "")  # an empty signal: the run fails, no pause
    assert (await _state(services, run_id)).status is RunStatus.FAILED
    waiting = await _waiting_run(services, "still-waiting")
    before = await _history_rows(services)

    response = await client.post(
        "/v1/signals", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400, response.text
    found = response.json()
    assert found["status"] == 400 and message in found["error"]
    assert await _history_rows(services) == before
    assert await _pauses(services) == [(waiting, "still-waiting")]


async def test_data_postgres_cannot_store_is_400_and_the_run_keeps_waiting(
    client: Client,
) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "nul")
    response = await client.post("/v1/signals", json={"signal": "nul", "data": "a\u0000b"})
    assert response.status_code == 400, response.text
    assert (await _state(services, run_id)).waiting == {"w": "signal"}
    assert await _pauses(services) == [(run_id, "nul")]


async def test_concurrent_signals_resume_the_run_once_and_the_rest_get_404(
    client: Client,
) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "race")
    responses = await asyncio.gather(
        *(client.post("/v1/signals", json={"signal": "race", "data": i}) for i in range(4))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 404, 404, 404]
    async with services.db.connection() as conn:
        history = await load_history(conn, run_id)
    [received] = [e for e in history if isinstance(e, h.SignalReceived)]
    [winner] = [r for r in responses if r.status_code == 200]
    assert winner.json()["data"]["run_id"] == run_id
    assert (await _state(services, run_id)).steps["w"]["data"]["data"] == received.data


async def test_a_signal_racing_the_timeout_resolves_the_step_once(client: Client) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "tick")
    sent, _ = await asyncio.gather(
        send_signal(services, "tick", "data"),
        run_command(services, run_id, c.TimeOutWait(step_id="w")),
    )
    async with services.db.connection() as conn:
        history = await load_history(conn, run_id)
    outcomes = [e for e in history if isinstance(e, h.SignalReceived | h.WaitTimedOut)]
    assert len(outcomes) == 1
    assert (sent == run_id) == isinstance(outcomes[0], h.SignalReceived)
    assert await _pauses(services) == []


async def test_a_timed_out_wait_resolves_with_null_and_frees_the_signal(client: Client) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "late")
    await run_command(services, run_id, c.TimeOutWait(step_id="w"))
    assert (await _state(services, run_id)).steps == {"w": None}
    response = await client.post("/v1/signals", json={"signal": "late"})
    assert response.status_code == 404
    again = await _waiting_run(services, "late")  # the signal is free for a new wait
    assert (await _state(services, again)).waiting == {"w": "signal"}


async def test_an_expired_wait_is_not_resumed(db_url: str) -> None:
    async with AsyncTestClient(_app(db_url)) as client:
        services = _services(client)
        run_id = await _waiting_run(services, "expired", timeout="1s")
        async with services.db.connection() as conn:
            await conn.execute(
                "UPDATE pauses SET expires_at = now() - interval '1 minute' WHERE run_id = %s",
                (run_id,),
            )
        response = await client.post("/v1/signals", json={"signal": "expired"})
        assert response.status_code == 404
        assert (await _state(services, run_id)).waiting == {"w": "signal"}


async def test_a_second_wait_on_a_taken_signal_fails_its_run(client: Client) -> None:
    services = _services(client)
    first = await _waiting_run(services, "solo")
    second = await _waiting_run(services, "solo", conflict="fail")
    failed = await _state(services, second)
    assert failed.status is RunStatus.FAILED
    assert failed.error["message"] == SIGNAL_CONFLICT
    assert await _pauses(services) == [(first, "solo")]
    response = await client.post("/v1/signals", json={"signal": "solo"})
    assert response.json()["data"]["run_id"] == first


async def test_a_replacing_wait_takes_the_signal_and_the_other_only_times_out(
    client: Client,
) -> None:
    services = _services(client)
    first = await _waiting_run(services, "handover")
    second = await _waiting_run(services, "handover", conflict="replace")
    assert (await _state(services, second)).waiting == {"w": "signal"}
    assert sorted(await _pauses(services)) == sorted([(first, None), (second, "handover")])

    response = await client.post("/v1/signals", json={"signal": "handover", "data": 2})

    assert response.json()["data"]["run_id"] == second
    assert (await _state(services, first)).waiting == {"w": "signal"}
    await run_command(services, first, c.TimeOutWait(step_id="w"))
    assert (await _state(services, first)).steps == {"w": None}


async def test_of_runs_starting_to_wait_at_once_exactly_one_holds_the_signal(
    client: Client,
) -> None:
    services = _services(client)
    runs = [await _schedule(services) for _ in range(4)]
    await asyncio.gather(*(run_command(services, r, _wait_op("crowd")) for r in runs))
    states = [await _state(services, r) for r in runs]
    waiting = [r for r, s in zip(runs, states, strict=True) if s.waiting == {"w": "signal"}]
    failed = [s for s in states if s.status is RunStatus.FAILED]
    assert len(waiting) == 1 and len(failed) == 3
    assert all(s.error["message"] == SIGNAL_CONFLICT for s in failed)
    assert await _pauses(services) == [(waiting[0], "crowd")]


async def test_self_hosted_signals_need_the_signing_key(db_url: str) -> None:
    async with AsyncTestClient(_app(db_url, mode="start", signing_key=KEY, event_keys=("k",))) as c:
        services = _services(c)
        run_id = await _waiting_run(services, "guarded")
        denied = await c.post("/v1/signals", json={"signal": "guarded"})
        assert denied.status_code == 401
        assert denied.json() == {"error": "unauthorized", "status": 401, "data": None}
        assert (await _state(services, run_id)).waiting == {"w": "signal"}
        allowed = await c.post(
            "/v1/signals", json={"signal": "guarded"}, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert allowed.status_code == 200 and allowed.json()["data"]["run_id"] == run_id


TRACE = """query($id: String!) { runTrace(runID: $id) { childrenSpans {
  name status stepOp outputID
  stepInfo { ... on WaitForSignalStepInfo { signal timeout timedOut } } } } }"""


async def test_graphql_and_the_ui_show_the_wait_then_the_received_signal(client: Client) -> None:
    services = _services(client)
    run_id = await _waiting_run(services, "shown")

    async def span() -> dict[str, Any]:
        response = await client.post(GQL_PATH, json={"query": TRACE, "variables": {"id": run_id}})
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        [found] = response.json()["data"]["runTrace"]["childrenSpans"]
        return dict(found)

    waiting = await span()
    assert (waiting["name"], waiting["status"], waiting["stepOp"]) == (
        "wait-for-it",
        "WAITING",
        "WAIT_FOR_SIGNAL",
    )
    assert waiting["stepInfo"]["signal"] == "shown" and waiting["stepInfo"]["timedOut"] is None
    page = await client.get(f"/runs/{run_id}")
    assert page.status_code == 200 and "waitForSignal" in page.text and "shown" in page.text

    await client.post("/v1/signals", json={"signal": "shown", "data": {"v": 3}})

    done = await span()
    assert done["status"] == "COMPLETED" and done["stepInfo"]["timedOut"] is False
    output = await client.post(
        GQL_PATH,
        json={
            "query": "query($id: String!) { runTraceSpanOutputByID(outputID: $id) { data } }",
            "variables": {"id": done["outputID"]},
        },
    )
    assert output.json()["data"]["runTraceSpanOutputByID"]["data"] == (
        '{"signal":"shown","data":{"v":3}}'
    )
