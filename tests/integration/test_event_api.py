"""``POST /e/{key}`` and ``POST /invoke/{slug}`` against a real PostgreSQL (and a real SDK).

Every accepted event must be in ``events`` with exactly one ``event`` queue item naming it;
every rejected request must leave both tables as they were.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import inngest
import psycopg
import pytest
import uvicorn
from inngest._internal.errors import SendEventsError
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.main import create_app
from app.settings import Settings
from domain.event_ids import parse_seed, seeded_event_id
from domain.events import MAX_EVENT_BYTES, MAX_EVENTS_PER_REQUEST
from domain.ids import is_ulid
from tests.conftest import count_rows
from tests.processes import free_port

SEED = "1743130137367,eii2YKXRVTJPuA=="
SIGNING_KEY = "signkey-test-0123456789abcdef0123456789abcdef"
SELF_HOSTED = Settings(mode="start", signing_key=SIGNING_KEY, event_keys=("k1",), run_workers=False)

Client = AsyncTestClient[Litestar]


def build_app(db_url: str, settings: Settings | None = None) -> Litestar:
    return create_app(settings or Settings(run_workers=False), db_url)


@asynccontextmanager
async def client_for(db_url: str, settings: Settings | None = None) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=build_app(db_url, settings)) as client:
        yield client


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    async with client_for(db_url) as c:
        yield c


def stored(db_url: str) -> dict[str, dict[str, Any]]:
    """Stored events by internal id, with how many ``event`` queue items name each."""
    with psycopg.connect(db_url) as conn:
        events = conn.execute(
            'SELECT internal_id, id, name, data, "user", ts, v FROM events'
        ).fetchall()
        items = conn.execute(
            "SELECT payload->>'internal_id', job_id FROM queue_items WHERE kind = 'event'"
        ).fetchall()
    result = {
        r[0]: {"id": r[1], "name": r[2], "data": r[3], "user": r[4], "ts": r[5], "v": r[6]}
        for r in events
    }
    for row in result.values():
        row["items"] = 0
    for internal_id, job_id in items:
        assert job_id == f"event:{internal_id}"
        result[internal_id]["items"] += 1
    return result


def assert_nothing_stored(db_url: str) -> None:
    assert count_rows(db_url, "events") == 0
    assert count_rows(db_url, "queue_items") == 0


def assert_rejected(response: Any, words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400 and body["ids"] == []
    assert words in body["error"], body["error"]


async def test_a_single_event_is_stored_and_enqueued_and_its_id_returned(
    client: Client, db_url: str
) -> None:
    response = await client.post("/e/anything", json={"name": "app/signup", "data": {"a": 1}})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ids", "status"} and body["status"] == 200
    [internal_id] = body["ids"]
    assert is_ulid(internal_id)
    row = stored(db_url)[internal_id]
    # Without an idempotency key the external id is the internal one.
    assert row["id"] == internal_id
    assert (row["name"], row["data"], row["user"], row["items"]) == ("app/signup", {"a": 1}, {}, 1)


async def test_an_array_is_stored_in_order_with_one_item_per_event(
    client: Client, db_url: str
) -> None:
    events = [
        {"name": "a", "data": {"i": 0}, "id": "key-0", "ts": 1_700_000_000_000, "v": "1"},
        {"name": "b", "data": {"i": 1, "_inngest": {"fn_id": "x"}}, "user": {"u": 1}},
        {"name": "c"},
    ]
    response = await client.post("/e/key", json=events)
    assert response.status_code == 200
    ids = response.json()["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    rows = stored(db_url)
    assert [rows[i]["name"] for i in ids] == ["a", "b", "c"]
    assert rows[ids[0]]["id"] == "key-0"
    assert (rows[ids[0]]["ts"], rows[ids[0]]["v"]) == (1_700_000_000_000, "1")
    assert rows[ids[1]]["data"] == {"i": 1}  # user-supplied _inngest dropped
    assert rows[ids[1]]["user"] == {"u": 1}
    assert all(rows[i]["items"] == 1 for i in ids)


async def test_an_empty_array_is_accepted_and_stores_nothing(client: Client, db_url: str) -> None:
    response = await client.post("/e/key", json=[])
    assert response.json() == {"ids": [], "status": 200}
    assert_nothing_stored(db_url)


async def test_seeded_retries_get_the_same_ids_without_duplicating_work(
    client: Client, db_url: str
) -> None:
    events = [{"name": "a", "data": {"n": i}} for i in range(3)]
    headers = {"x-inngest-event-id-seed": SEED}
    first = await client.post("/e/key", json=events, headers=headers)
    second = await client.post("/e/key", json=events, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    seed = parse_seed(SEED)
    assert seed is not None
    assert first.json()["ids"] == [seeded_event_id(seed, i) for i in (1, 2, 3)]
    rows = stored(db_url)
    assert sorted(rows) == sorted(first.json()["ids"])
    assert all(row["items"] == 1 for row in rows.values())
    assert count_rows(db_url, "queue_items") == 3


async def test_a_seeded_retry_after_processing_does_not_process_the_events_again(
    client: Client, db_url: str
) -> None:
    """The first send was stored and processed (its items are gone) but its answer was lost;
    the client's retry with the same seed must not create processing items again."""
    events = [{"name": "a", "data": {"n": i}} for i in range(2)]
    headers = {"x-inngest-event-id-seed": SEED}
    first = await client.post("/e/key", json=events, headers=headers)
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM queue_items")  # what processing the events does
    retry = await client.post("/e/key", json=events, headers=headers)
    assert retry.status_code == 200 and retry.json() == first.json()
    assert count_rows(db_url, "events") == 2
    assert count_rows(db_url, "queue_items") == 0


async def test_a_malformed_seed_falls_back_to_random_ids(client: Client, db_url: str) -> None:
    headers = {"x-inngest-event-id-seed": "not-a-seed"}
    first = await client.post("/e/key", json={"name": "a"}, headers=headers)
    second = await client.post("/e/key", json={"name": "a"}, headers=headers)
    assert first.json()["ids"] != second.json()["ids"]
    assert count_rows(db_url, "events") == 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "inngest/function.finished"}, "reserved"),
        ([{"name": "Inngest/x"}, {"name": "ok"}], "reserved"),
        ({"data": {}}, "event name is empty"),
        ([{"name": ""}, {"name": "ok"}], "event name is empty"),
        ({"name": 5}, "name must be a string"),
        ({"name": "a", "data": [1]}, "data must be a JSON object"),
        ({"name": "a", "user": "u"}, "user must be a JSON object"),
        ({"name": "a", "ts": "now"}, "ts must be an integer"),
        ({"name": "a", "ts": 1_000}, "before Jan 1, 1980"),
        ({"name": "a", "id": 7}, "id must be a string"),
        ([3, {"name": "ok"}], "JSON object"),
        ("just a string", "event object or an array"),
        ({"name": "a", "data": {"blob": "x" * MAX_EVENT_BYTES}}, f"Max {MAX_EVENT_BYTES} bytes"),
    ],
)
async def test_a_request_whose_first_event_is_invalid_stores_nothing(
    client: Client, db_url: str, body: Any, words: str
) -> None:
    assert_rejected(await client.post("/e/key", json=body), words)
    assert_nothing_stored(db_url)


@pytest.mark.parametrize("raw", [b"{not json", b'[{"name": "a"},', b"NaN", b'{"name":"a"} x'])
async def test_malformed_json_is_rejected_with_no_ids(
    client: Client, db_url: str, raw: bytes
) -> None:
    response = await client.post(
        "/e/key", content=raw, headers={"content-type": "application/json"}
    )
    assert_rejected(response, "invalid JSON")
    assert_nothing_stored(db_url)


async def test_a_nul_character_postgres_cannot_store_is_a_client_error(
    client: Client, db_url: str
) -> None:
    body = [{"name": "a", "data": {"s": "nul\u0000here"}}, {"name": "fine"}]
    assert_rejected(await client.post("/e/key", json=body), "cannot be stored")
    assert_nothing_stored(db_url)


async def test_an_unstorable_event_after_good_ones_keeps_the_good_ones_as_a_bad_event_does(
    client: Client, db_url: str
) -> None:
    body = [{"name": "fine"}, {"name": "a", "data": {"deep": [{"\u0000key": 1}]}}, {"name": "b"}]
    response = await client.post("/e/key", json=body)
    assert response.status_code == 400
    answer = response.json()
    assert "cannot be stored" in answer["error"] and len(answer["ids"]) == 1
    assert [row["name"] for row in stored(db_url).values()] == ["fine"]


async def test_an_escaped_backslash_before_u0000_is_not_a_nul_character(
    client: Client, db_url: str
) -> None:
    body = [{"name": "fine", "data": {"path": "C:\\u0000"}}]
    response = await client.post("/e/key", json=body)
    assert response.status_code == 200, response.text
    [row] = stored(db_url).values()
    assert row["data"] == {"path": "C:\\u0000"}


async def test_a_full_batch_of_the_maximum_size_is_accepted(client: Client, db_url: str) -> None:
    body = [{"name": "bulk", "data": {"i": i}} for i in range(MAX_EVENTS_PER_REQUEST)]
    response = await client.post("/e/key", json=body)
    assert response.status_code == 200
    assert len(response.json()["ids"]) == MAX_EVENTS_PER_REQUEST
    assert count_rows(db_url, "events") == MAX_EVENTS_PER_REQUEST
    assert count_rows(db_url, "queue_items", "kind = 'event'") == MAX_EVENTS_PER_REQUEST


async def test_self_hosted_rejects_a_wrong_key_with_go_s_exact_body(db_url: str) -> None:
    async with client_for(db_url, SELF_HOSTED) as client:
        response = await client.post("/e/wrong", json={"name": "a"})
        assert response.status_code == 401
        assert response.json() == {"status": 401, "message": "", "error": "Event key not found"}
        assert_nothing_stored(db_url)
        ok = await client.post("/e/k1", json={"name": "a"})
        assert ok.status_code == 200 and len(ok.json()["ids"]) == 1
    assert count_rows(db_url, "events") == 1


async def test_an_empty_key_is_required_when_keys_are_configured(db_url: str) -> None:
    async with client_for(db_url, SELF_HOSTED) as client:
        response = await client.post("/e/", json={"name": "a"})
        assert response.status_code == 401
        assert response.json() == {"status": 401, "message": "", "error": "Event key is required"}
    assert_nothing_stored(db_url)


async def test_dev_accepts_any_key_even_with_keys_configured(db_url: str) -> None:
    # ``stepwell dev`` reads INNGEST_EVENT_KEY; SDKs in dev mode still send NO_EVENT_KEY_SET.
    settings = Settings(event_keys=("k1",), run_workers=False)
    async with client_for(db_url, settings) as client:
        response = await client.post("/e/NO_EVENT_KEY_SET", json={"name": "a"})
    assert response.status_code == 200
    assert count_rows(db_url, "events") == 1


async def test_self_hosted_without_event_keys_refuses_events(db_url: str) -> None:
    settings = Settings(mode="start", signing_key=SIGNING_KEY, run_workers=False)
    async with client_for(db_url, settings) as client:
        response = await client.post("/e/k1", json={"name": "a"})
    assert response.status_code == 503
    assert response.json()["error"] == "Event keys are required to process events securely"
    assert_nothing_stored(db_url)


def add_function(db_url: str, slug: str, *, archived: bool = False) -> str:
    function_id = f"fn-{slug}"
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO apps (id, name, url, created_at, updated_at) "
            "VALUES ('app-1', 'app', 'http://x', now(), now()) ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO functions (id, app_id, slug, name, version, config, archived_at,"
            " created_at, updated_at) VALUES (%s, 'app-1', %s, %s, 1, '{}', %s, now(), now())",
            (function_id, slug, slug, "2026-01-01" if archived else None),
        )
    return function_id


async def test_invoke_stores_an_invocation_event_for_the_function(
    client: Client, db_url: str
) -> None:
    add_function(db_url, "app-hello")
    response = await client.post(
        "/invoke/app-hello", json={"data": {"who": "me"}, "user": {"u": 1}}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "status"} and body["status"] == 200
    row = stored(db_url)[body["id"]]
    assert row["name"] == "inngest/function.invoked"
    assert row["data"]["who"] == "me" and row["data"]["_inngest"]["fn_id"] == "app-hello"
    assert row["user"] == {"u": 1}
    assert row["items"] == 1


async def test_invoke_accepts_the_function_id_as_well_as_the_slug(
    client: Client, db_url: str
) -> None:
    function_id = add_function(db_url, "app-by-id")
    response = await client.post(f"/invoke/{function_id}", json={})
    assert response.status_code == 200
    assert stored(db_url)[response.json()["id"]]["data"]["_inngest"]["fn_id"] == function_id


@pytest.mark.parametrize("archived", [False, True])
async def test_invoking_an_unknown_or_archived_function_is_404(
    client: Client, db_url: str, archived: bool
) -> None:
    if archived:
        add_function(db_url, "app-old", archived=True)
    response = await client.post("/invoke/app-old", json={"data": {}})
    assert response.status_code == 404
    assert response.json()["status"] == 404 and "app-old" in response.json()["error"]
    assert_nothing_stored(db_url)


@pytest.mark.parametrize(
    ("raw", "words"), [(b"nope", "Unable to read"), (b'{"data": 1}', "Invalid invocation")]
)
async def test_invalid_invocation_bodies_are_400(
    client: Client, db_url: str, raw: bytes, words: str
) -> None:
    add_function(db_url, "app-hello")
    response = await client.post("/invoke/app-hello", content=raw)
    assert response.status_code == 400 and words in response.json()["error"]
    assert_nothing_stored(db_url)


async def test_self_hosted_invoke_requires_the_signing_key(db_url: str) -> None:
    add_function(db_url, "app-hello")
    async with client_for(db_url, SELF_HOSTED) as client:
        denied = await client.post("/invoke/app-hello", json={})
        assert denied.status_code == 401
        assert_nothing_stored(db_url)
        allowed = await client.post(
            "/invoke/app-hello", json={}, headers={"authorization": f"Bearer {SIGNING_KEY}"}
        )
        assert allowed.status_code == 200


@contextmanager
def serve(db_url: str, settings: Settings | None = None) -> Iterator[str]:
    """The app under uvicorn on a free port, in a background thread."""
    port = free_port()
    config = uvicorn.Config(
        build_app(db_url, settings), host="127.0.0.1", port=port, log_level="warning", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def sdk_client(**options: Any) -> Iterator[inngest.Inngest]:
    sdk = inngest.Inngest(app_id="events-test", **options)
    try:
        yield sdk
    finally:
        # The client never closes its own connection pools; left open they surface as
        # ResourceWarnings (errors here) in whichever test runs the garbage collector next.
        sdk._http_client._http_client_sync.close()
        _close_async_pool(sdk)


def _close_async_pool(sdk: inngest.Inngest) -> None:
    pool = sdk._http_client._http_client
    if not pool.is_closed:
        asyncio.run(pool.aclose())


def test_the_python_sdk_accepts_our_reply_and_gets_the_stored_ids(db_url: str) -> None:
    with serve(db_url) as url, sdk_client(is_production=False, event_api_base_url=url) as sdk:
        one = sdk.send_sync(inngest.Event(name="sdk/one", data={"n": 1}))
        many = sdk.send_sync([inngest.Event(name="sdk/many", data={"n": i}) for i in range(5)])
        with pytest.raises(SendEventsError) as info:
            sdk.send_sync(inngest.Event(name="inngest/forbidden"))
    rows = stored(db_url)
    assert len(one) == 1 and len(many) == 5
    assert sorted(rows) == sorted(one + many)
    assert rows[one[0]]["name"] == "sdk/one" and rows[one[0]]["data"] == {"n": 1}
    assert [rows[i]["data"]["n"] for i in many] == list(range(5))
    assert all(row["items"] == 1 for row in rows.values())
    assert "reserved" in str(info.value)


async def test_the_async_python_sdk_in_cloud_mode_sends_with_an_event_key(db_url: str) -> None:
    cloud = {"is_production": True, "signing_key": SIGNING_KEY}
    with serve(db_url, SELF_HOSTED) as url:
        sdk = inngest.Inngest(app_id="events-test", event_key="k1", event_api_base_url=url, **cloud)
        wrong = inngest.Inngest(
            app_id="events-test", event_key="nope", event_api_base_url=url, **cloud
        )
        try:
            ids = await sdk.send([inngest.Event(name="sdk/cloud", data={"x": "y"})])
            with pytest.raises(SendEventsError):
                await wrong.send(inngest.Event(name="sdk/cloud"))
        finally:
            for client in (sdk, wrong):
                await client._http_client._http_client.aclose()
                client._http_client._http_client_sync.close()
    rows = stored(db_url)
    assert list(rows) == ids
    assert json.dumps(rows[ids[0]]["data"]) == '{"x": "y"}'
