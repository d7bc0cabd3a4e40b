"""``POST /e`` answers as Inngest's ``pkg/api/api.go`` does: partial sends and the 3 MiB limit.

Go stores each event as its stream parser hands it over, so a bad event stops a request there:
the events before it are stored, the reply is 400 ``{"ids": [their ids], "status": 400,
"error": <Go's text>}``, and nothing after it is stored or run.  One event may be up to
``consts.AbsoluteMaxEventSize`` (3 MiB).  Stepwell keeps one difference on purpose: a retried
send with the same seed stores its events once (Go stores them again under the same ids).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.events import LARGE_BODIES_AT_ONCE
from app.main import create_app
from app.settings import Settings
from domain.event_ids import parse_seed, seeded_event_id
from domain.events import MAX_EVENT_BYTES, MAX_EVENTS_PER_REQUEST
from tests.conftest import count_rows
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_server
from tests.integration.test_event_api import stored
from tests.integration.test_sync import stepwell
from tests.processes import ROOT, clean_env, free_port, spawn

Client = AsyncTestClient[Litestar]
SEED = "1743130137367,eii2YKXRVTJPuA=="
SEED_HEADERS = {"x-inngest-event-id-seed": SEED}
EVENTS_APP = ROOT / "tests" / "e2e" / "apps" / "events_py_app.py"
TOO_BIG = (
    f"Event is over the max size: Max {MAX_EVENT_BYTES} bytes / Size {MAX_EVENT_BYTES + 1} bytes"
)


def seeded(*positions: int) -> list[str]:
    seed = parse_seed(SEED)
    assert seed is not None
    return [seeded_event_id(seed, p) for p in positions]


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def sized_event(name: str, size: int) -> dict[str, Any]:
    """An event whose compact JSON (what both SDKs send) is exactly ``size`` bytes."""
    overhead = len(compact({"name": name, "data": {"blob": ""}}))
    event = {"name": name, "data": {"blob": "x" * (size - overhead)}}
    assert len(compact(event)) == size
    return event


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    app = create_app(Settings(run_workers=False), db_url)
    async with AsyncTestClient(app=app, timeout=60) as c:
        yield c


async def post(client: Client, body: Any) -> httpx.Response:
    headers = {"content-type": "application/json", **SEED_HEADERS}
    return await client.post("/e/key", content=compact(body), headers=headers)


async def test_a_partial_send_stores_the_events_before_the_bad_one_and_says_which(
    client: Client, db_url: str
) -> None:
    # inngest-py's test_partial_send_error: one good event, then two with an empty name.
    body = [{"name": "parity/ok", "data": {"n": 1}}, {"name": ""}, {"name": ""}]
    response = await post(client, body)
    assert response.status_code == 400
    assert response.json() == {"ids": seeded(1), "status": 400, "error": "event name is empty"}
    rows = stored(db_url)
    assert list(rows) == seeded(1)
    assert rows[seeded(1)[0]]["name"] == "parity/ok" and rows[seeded(1)[0]]["items"] == 1
    listed = (await client.get("/v1/events", params={"name": "parity/ok"})).json()["data"]
    assert [e["internal_id"] for e in listed] == seeded(1)
    assert listed[0]["data"] == {"n": 1}


async def test_a_bad_event_in_the_middle_stops_the_request_there(
    client: Client, db_url: str
) -> None:
    body = [{"name": "a"}, {"name": "b"}, {"name": "c", "ts": 5}, {"name": "d"}]
    response = await post(client, body)
    assert response.status_code == 400
    assert response.json() == {
        "ids": seeded(1, 2),
        "status": 400,
        "error": "timestamp is before Jan 1, 1980",
    }
    assert sorted(row["name"] for row in stored(db_url).values()) == ["a", "b"]


async def test_a_retried_partial_send_gets_the_same_answer_and_stores_its_events_once(
    client: Client, db_url: str
) -> None:
    body = [{"name": "parity/once"}, {"name": "inngest/forged"}]
    first, second = await post(client, body), await post(client, body)
    error = "event name is reserved for internal use: inngest/forged"
    assert first.json() == {"ids": seeded(1), "status": 400, "error": error}
    assert second.json() == first.json()
    # Inngest would now hold two copies; Stepwell stores the seeded id once (README).
    assert count_rows(db_url, "events") == 1
    assert count_rows(db_url, "queue_items", "kind = 'event'") == 1


async def test_an_event_of_exactly_3_mib_is_accepted_and_one_byte_more_refused_as_inngest_does(
    client: Client, db_url: str
) -> None:
    assert MAX_EVENT_BYTES == 3 * 1024 * 1024
    largest = sized_event("parity/big", MAX_EVENT_BYTES)
    accepted = await post(client, largest)
    assert accepted.status_code == 200 and accepted.json() == {"ids": seeded(1), "status": 200}
    assert len(stored(db_url)[seeded(1)[0]]["data"]["blob"]) > 3 * 1024 * 1024 - 100

    refused = await post(client, sized_event("parity/big", MAX_EVENT_BYTES + 1))
    assert refused.status_code == 400
    assert refused.json() == {"ids": [], "status": 400, "error": TOO_BIG}
    assert count_rows(db_url, "events") == 1


async def test_an_event_over_3_mib_after_a_good_one_keeps_the_good_one(
    client: Client, db_url: str
) -> None:
    body = [{"name": "parity/small"}, sized_event("parity/big", MAX_EVENT_BYTES + 1)]
    response = await post(client, body)
    assert response.status_code == 400
    assert response.json() == {"ids": seeded(1), "status": 400, "error": TOO_BIG}
    assert [row["name"] for row in stored(db_url).values()] == ["parity/small"]


async def test_several_events_of_the_maximum_size_fit_in_one_request(
    client: Client, db_url: str
) -> None:
    body = [sized_event(f"parity/big-{i}", MAX_EVENT_BYTES) for i in range(5)]
    response = await post(client, body)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["ids"] == seeded(1, 2, 3, 4, 5)
    assert count_rows(db_url, "events") == 5
    assert count_rows(db_url, "queue_items", "kind = 'event'") == 5


async def test_events_past_the_5000th_are_refused_and_the_first_5000_stored(
    client: Client, db_url: str
) -> None:
    body = [{"name": "parity/bulk", "data": {"i": i}} for i in range(MAX_EVENTS_PER_REQUEST + 2)]
    response = await post(client, body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "Cannot have more than 5000 events in a batch"
    assert answer["ids"] == seeded(*range(1, MAX_EVENTS_PER_REQUEST + 1))
    assert count_rows(db_url, "events") == MAX_EVENTS_PER_REQUEST


@pytest.fixture
def events_stack(db_url: str, tmp_path: Path) -> Iterator[Stepwell]:
    """A Stepwell server process and ``events_py_app`` (the official Python SDK), synced."""
    with ExitStack() as ex:
        server = start_server(ex, db_url, tmp_path)
        port = free_port()
        ex.enter_context(
            spawn(
                [sys.executable, str(EVENTS_APP), "--port", str(port)],
                port=port,
                health="/healthz",
                log=tmp_path / "events_app.log",
                env=clean_env(STEPWELL_URL=server.url),
            )
        )
        sw = Stepwell(server.url, app="e2e-events")
        ex.callback(sw.close)
        sw.sync(f"http://127.0.0.1:{port}/api/inngest")
        yield sw


def test_a_3_mib_event_runs_its_function_with_the_whole_event_and_a_bad_one_runs_nothing(
    events_stack: Stepwell, db_url: str
) -> None:
    sw = events_stack
    big = sized_event("e2e/events.big", MAX_EVENT_BYTES)
    bad = {"name": "e2e/events.big", "data": {"blob": "late"}, "ts": 5}
    after = {"name": "e2e/events.big", "data": {"blob": "never"}}
    response = sw.http.post("/e/key", content=compact([big, bad, after]), headers=SEED_HEADERS)
    assert response.status_code == 400
    assert response.json() == {
        "ids": seeded(1),
        "status": 400,
        "error": "timestamp is before Jan 1, 1980",
    }
    run = sw.run_of(seeded(1)[0], "e2e-events-big-event", timeout=60)
    blob = big["data"]["blob"]
    assert run["status"] == "Completed", run
    assert run["output"] == {
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "measured": len(blob),
    }
    # Only the stored event ran: the bad one and the one after it were never stored.
    assert count_rows(db_url, "events", "name = 'e2e/events.big'") == 1
    assert count_rows(db_url, "runs") == 1


async def test_large_bodies_take_turns_while_small_ones_go_straight_through(
    db_url: str,
) -> None:
    """Parsing and storing a big body costs a few times its size in memory, so big bodies are
    handled ``LARGE_BODIES_AT_ONCE`` at a time; one that waits has stored nothing yet."""
    port = free_port()
    # Served on this event loop, so the test can hold the server's turns itself.
    async with (
        stepwell(db_url, port) as services,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        turns = services.large_ingests
        for _ in range(LARGE_BODIES_AT_ONCE):
            await turns.acquire()  # every turn taken, as by big requests in flight
        big = [sized_event("parity/turns", MAX_EVENT_BYTES), {"name": "parity/turns"}]
        headers = {"content-type": "application/json", **SEED_HEADERS}
        waiting = asyncio.create_task(client.post("/e/key", content=compact(big), headers=headers))
        while not getattr(turns, "_waiters", None):  # until the request waits for a turn
            assert not waiting.done(), waiting.result().text[:300]
            await asyncio.sleep(0.01)
        small = await client.post("/e/key", json={"name": "parity/small"})
        assert small.status_code == 200
        assert count_rows(db_url, "events", "name = 'parity/turns'") == 0
        turns.release()
        response = await waiting
        assert response.status_code == 200 and response.json()["ids"] == seeded(1, 2)
        assert count_rows(db_url, "events", "name = 'parity/turns'") == 2
        turns.release()
