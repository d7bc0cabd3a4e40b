"""REST v1 reads over HTTP: events (list, cursor pages, windows, one event), run jobs, auth,
and the OpenAPI document describing every REST route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.main import Services, create_app
from app.settings import Settings
from app.store.events import insert_events
from app.store.queue import to_dt
from domain.ids import ACCOUNT_ID, ENV_ID, new_ulid
from tests.integration.test_rebuild import BASE_MS, DONE, FUNCTIONS, Driver, StepClock

MINUTE = 60_000
EVENT_KEYS = {
    "internal_id",
    "account_id",
    "environment_id",
    "source",
    "source_id",
    "received_at",
    "id",
    "name",
    "data",
    "user",
    "ts",
    "v",
}

Client = AsyncTestClient[Litestar]


def _app(db_url: str, **settings: Any) -> Litestar:
    return create_app(Settings(run_workers=False, **settings), db_url, clock=StepClock(BASE_MS))


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(_app(db_url)) as c:
        yield c


def _services(client: Client) -> Services:
    services: Services = client.app.state.services
    return services


async def _store_event(
    client: Client, name: str, minutes_ago: float, *, source: str = "api", **fields: Any
) -> str:
    """Store an event received ``minutes_ago`` before the app clock's now; its internal id."""
    services = _services(client)
    now = services.clock.now_ms()
    at = int(now - minutes_ago * MINUTE)
    internal_id = new_ulid(at)
    event = {"name": name, "data": fields.pop("data", {"n": name}), "ts": at, **fields}
    async with services.db.connection() as conn, conn.transaction():
        await insert_events(conn, [(internal_id, event)], to_dt(at), at, source=source)
    return internal_id


async def _get(client: Client, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data", "metadata"}
    assert set(body["metadata"]) == {"fetched_at", "cached_until"}
    return body["data"]


async def test_events_are_listed_newest_first_and_paged_by_cursor(client: Client) -> None:
    ids = [await _store_event(client, "rest/a", 50 - i) for i in range(5)]
    await _store_event(client, "rest/b", 20)
    await _store_event(client, "inngest/function.finished", 10, source="internal")

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"name": "rest/a", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await _get(client, "/v1/events", **params)
        if not page:
            break
        pages.append([e["internal_id"] for e in page])
        cursor = page[-1]["internal_id"]
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[0:1]]

    everything = await _get(client, "/v1/events")
    assert [e["name"] for e in everything] == ["rest/b", *["rest/a"] * 5]  # no internal events
    internal = await _get(client, "/v1/events", name="inngest/function.finished")
    assert [e["source"] for e in internal] == ["internal"]


async def test_an_event_has_the_rest_v1_shape(client: Client) -> None:
    internal_id = await _store_event(
        client, "rest/shape", 1, data={"x": [1, 2]}, id="user-key-1", user={"u": 1}, v="2024-01"
    )
    [listed] = await _get(client, "/v1/events", name="rest/shape")
    one = await _get(client, f"/v1/events/{internal_id}")
    assert listed == one
    assert set(one) == EVENT_KEYS
    assert one["internal_id"] == internal_id
    assert (one["account_id"], one["environment_id"]) == (ACCOUNT_ID, ENV_ID)
    assert (one["id"], one["name"], one["data"], one["user"], one["v"]) == (
        "user-key-1",
        "rest/shape",
        {"x": [1, 2]},
        {"u": 1},
        "2024-01",
    )
    assert one["source"] == "api" and one["source_id"] is None
    assert one["received_at"].endswith("Z") and isinstance(one["ts"], int)
    lower = await _get(client, f"/v1/events/{internal_id.lower()}")
    assert lower["internal_id"] == internal_id


async def test_limit_is_clamped_and_the_window_defaults_to_the_last_hour(client: Client) -> None:
    for minutes in (30, 20, 10):
        await _store_event(client, "rest/window", minutes)
    old = await _store_event(client, "rest/window", 120)
    assert len(await _get(client, "/v1/events", name="rest/window", limit=-5)) == 1
    assert len(await _get(client, "/v1/events", name="rest/window", limit=0)) == 3
    assert len(await _get(client, "/v1/events", name="rest/window", limit=1000)) == 3
    now = to_dt(_services(client).clock.now_ms())
    wide = await _get(
        client,
        "/v1/events",
        name="rest/window",
        received_after=(now.replace(microsecond=0) - timedelta(hours=3)).isoformat(),
    )
    assert [e["internal_id"] for e in wide][-1] == old
    narrow = await _get(
        client,
        "/v1/events",
        name="rest/window",
        received_after=(now - timedelta(minutes=24)).isoformat().replace("+00:00", "Z"),
        received_before=(now - timedelta(minutes=15)).isoformat(),
    )
    assert len(narrow) == 1


@pytest.mark.parametrize(
    ("path", "params", "status", "error"),
    [
        ("/v1/events", {"cursor": "nope"}, 400, "Invalid cursor query parameter"),
        ("/v1/events", {"received_after": "yesterday"}, 400, "Invalid received_after"),
        ("/v1/events", {"received_before": "2024-13-01"}, 400, "Invalid received_before"),
        ("/v1/events/01JD0000000000000000000000", {}, 404, "Event not found"),
        ("/v1/events/not-an-id", {}, 400, "Invalid event ID: not-an-id"),
        ("/v1/events/abc/runs", {}, 400, "Invalid event ID: abc"),
        ("/v1/runs/01JD0000000000000000000000/jobs", {}, 404, "Unable to load function run"),
        ("/v1/runs/not-a-run/jobs", {}, 400, "invalid run id"),
    ],
)
async def test_bad_requests_get_the_error_envelope(
    client: Client, path: str, params: dict[str, str], status: int, error: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and body["error"].startswith(error), body
    assert "data" in body


async def test_limit_must_be_a_number(client: Client) -> None:
    response = await client.get("/v1/events", params={"limit": "many"})
    assert response.status_code == 400
    assert response.json()["status"] == 400


async def test_run_jobs_show_the_runs_queue_items_and_their_positions(client: Client) -> None:
    services = _services(client)
    assert isinstance(services.clock, StepClock)
    driver = Driver(services, services.clock)
    first = await driver.schedule(FUNCTIONS[0])
    second = await driver.schedule(FUNCTIONS[0])
    other = await driver.schedule(FUNCTIONS[1])
    [job] = await _get(client, f"/v1/runs/{second}/jobs")
    assert set(job) == {"at", "position", "attempt", "kind"}
    assert (job["position"], job["attempt"], job["kind"]) == (1, 0, "start")
    assert job["at"].endswith("Z")
    assert [j["position"] for j in await _get(client, f"/v1/runs/{first}/jobs")] == [0]
    assert [j["position"] for j in await _get(client, f"/v1/runs/{other}/jobs")] == [0]
    await driver.call(first, DONE)
    assert await _get(client, f"/v1/runs/{first}/jobs") == []
    assert [j["position"] for j in await _get(client, f"/v1/runs/{second}/jobs")] == [0]


REST_ROUTES = {
    "/v1/events": {"get"},
    "/v1/events/{event_id}": {"get"},
    "/v1/events/{event_id}/runs": {"get"},
    "/v1/runs/{run_id}": {"get", "delete"},
    "/v1/runs/{run_id}/jobs": {"get"},
    "/v1/apps/{app_name}/functions": {"get"},
    "/v1/cancellations": {"get", "post"},
    "/v1/cancellations/{cancellation_id}": {"delete"},
}


async def test_the_openapi_document_describes_every_rest_route(client: Client) -> None:
    response = await client.get("/openapi/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path, methods in REST_ROUTES.items():
        assert path in paths, f"{path} missing from the OpenAPI document"
        assert methods <= set(paths[path]), (path, set(paths[path]))
        for method in methods:
            operation = paths[path][method]
            assert operation.get("summary"), (path, method)
            assert operation.get("description"), (path, method, "no docstring in the schema")
            for parameter in operation.get("parameters", []):
                assert parameter["schema"], (path, method, parameter["name"])
            # Every REST route reads or writes the database, which may be briefly unavailable.
            unavailable = operation["responses"].get("503")
            assert unavailable and "Retry-After" in unavailable["description"], (path, method)
    assert "413" in paths["/v1/cancellations"]["post"]["responses"]
    listing = {p["name"]: p for p in paths["/v1/events"]["get"]["parameters"]}
    assert {"name", "limit", "cursor", "received_after", "received_before"} <= set(listing)
    body = paths["/v1/cancellations"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]


async def test_self_hosted_rest_needs_the_signing_key(db_url: str) -> None:
    app = _app(db_url, mode="start", signing_key="signkey-test-abcd1234", event_keys=("k",))
    async with AsyncTestClient(app) as c:
        for path in ("/v1/events", "/v1/cancellations", "/v1/events/01JD0000000000000000000000"):
            denied = await c.get(path)
            assert denied.status_code == 401, path
            assert denied.json()["error"] == "unauthorized"
        allowed = await c.get(
            "/v1/events", headers={"Authorization": "Bearer signkey-test-abcd1234"}
        )
        assert allowed.status_code == 200
        post = await c.post("/v1/cancellations", json={})
        assert post.status_code == 401


async def test_self_hosted_openapi_needs_the_signing_key(db_url: str) -> None:
    key = "signkey-test-abcd1234"
    app = _app(db_url, mode="start", signing_key=key, event_keys=("k",))
    async with AsyncTestClient(app) as c:
        for path in ("/openapi/openapi.json", "/openapi", "/openapi/swagger", "/openapi/nothing"):
            denied = await c.get(path)
            assert denied.status_code == 401, path
            assert denied.json() == {"error": "unauthorized", "status": 401, "data": None}
        allowed = await c.get("/openapi/openapi.json", headers={"Authorization": f"Bearer {key}"})
        assert allowed.status_code == 200
        assert "/v1/events" in allowed.json()["paths"]
