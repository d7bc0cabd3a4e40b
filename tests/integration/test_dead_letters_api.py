"""REST v1 dead letters over HTTP: the list (shape, newest first, cursor pages, one run's),
retry (back on the queue, due now, failures reset), discard, bad ids and parameters, auth.

Dead letters are made as the worker makes them: an item is enqueued, claimed (leased) and
buried under its lease with ``dead_letters.bury``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.clock import SystemClock
from app.main import create_app
from app.settings import Settings
from app.store import dead_letters
from app.store import queue as q
from app.store.db import connect
from domain.ids import new_ulid
from domain.queue import ItemKind, ItemSpec

Client = AsyncTestClient[Litestar]
FUNCTION_ID = "7d0c6a10-0000-4000-8000-0000000000f1"
KEYS = {
    "id", "kind", "job_id", "run_id", "function_id", "attempt", "max_attempts", "failures",
    "reason", "enqueued_at", "died_at", "payload",
}  # fmt: skip
KEY = "signkey-test-abcd1234"


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    app = create_app(Settings(run_workers=False), db_url)
    async with AsyncTestClient(app) as c:
        yield c


async def bury(
    db_url: str, job_id: str, *, run_id: str | None = None, failures: int = 3, attempt: int = 0
) -> int:
    """A dead letter made the worker's way; its id."""
    now = SystemClock().now_ms()
    spec = ItemSpec(
        kind=ItemKind.EDGE, job_id=job_id, available_at=now, run_id=run_id,
        function_id=FUNCTION_ID if run_id else None, payload={"step_id": "step", "job": job_id},
        max_attempts=4,
    )  # fmt: skip
    conn = await connect(db_url)
    try:
        await q.enqueue_items(conn, [spec], now)
        [item] = await q.claim_due_items(conn, 10, 30_000, now)
        if attempt:
            await conn.execute(
                "UPDATE queue_items SET attempt = %s WHERE id = %s", (attempt, item.id)
            )
        reason = f"{failures} deliveries failed; last: ValueError: cannot handle {job_id}"
        assert await dead_letters.bury(conn, item, failures, reason)
        return item.id
    finally:
        await conn.close()


async def queued(db_url: str, job_id: str) -> tuple[Any, ...] | None:
    conn = await connect(db_url)
    try:
        cur = await conn.execute(
            "SELECT failures, lease_id, available_at <= clock_timestamp(), attempt"
            "  FROM queue_items WHERE job_id = %s",
            (job_id,),
        )
        return await cur.fetchone()
    finally:
        await conn.close()


def is_rfc3339_utc(value: str) -> bool:
    return value.endswith("Z") and datetime.fromisoformat(value).tzinfo == UTC


async def test_the_list_shows_each_dead_letter_newest_first(db_url: str, client: Client) -> None:
    run_id = new_ulid()
    older = await bury(db_url, "job-old", run_id=run_id, attempt=2)
    newer = await bury(db_url, "job-new")
    response = await client.get("/v1/dead-letters")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [d["id"] for d in body["data"]] == [newer, older]
    assert body["metadata"]["next_cursor"] is None and body["metadata"]["fetched_at"]
    first, second = body["data"]
    assert set(first) == KEYS
    assert second == {
        **{k: second[k] for k in ("enqueued_at", "died_at")},
        "id": older, "kind": "edge", "job_id": "job-old", "run_id": run_id,
        "function_id": FUNCTION_ID, "attempt": 2, "max_attempts": 4, "failures": 3,
        "reason": "3 deliveries failed; last: ValueError: cannot handle job-old",
        "payload": {"step_id": "step", "job": "job-old"},
    }  # fmt: skip
    assert is_rfc3339_utc(second["enqueued_at"]) and is_rfc3339_utc(second["died_at"])
    assert (first["run_id"], first["function_id"]) == (None, None)


async def test_the_list_pages_with_the_cursor_until_it_is_null(db_url: str, client: Client) -> None:
    ids = [await bury(db_url, f"job-{i}") for i in range(5)]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/v1/dead-letters", params=params)).json()
        pages += 1
        seen += [d["id"] for d in body["data"]]
        cursor = body["metadata"]["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert seen == sorted(ids, reverse=True) and pages == 3


async def test_the_list_filters_by_run(db_url: str, client: Client) -> None:
    run_a, run_b = new_ulid(), new_ulid()
    a1 = await bury(db_url, "a1", run_id=run_a)
    await bury(db_url, "b1", run_id=run_b)
    a2 = await bury(db_url, "a2", run_id=run_a)
    body = (await client.get("/v1/dead-letters", params={"run_id": run_a.lower()})).json()
    assert [d["id"] for d in body["data"]] == [a2, a1]
    body = (await client.get("/v1/dead-letters", params={"run_id": new_ulid()})).json()
    assert body["data"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"}, {"limit": "501"}, {"limit": "-3"}, {"limit": "many"},
        {"cursor": "abc"}, {"cursor": "0"}, {"cursor": "1" * 30}, {"run_id": "not-a-run"},
    ],
)  # fmt: skip
async def test_bad_list_parameters_are_400(client: Client, params: dict[str, str]) -> None:
    response = await client.get("/v1/dead-letters", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == 400 and response.json()["error"]


async def test_the_largest_limit_is_accepted(db_url: str, client: Client) -> None:
    await bury(db_url, "job")
    response = await client.get("/v1/dead-letters", params={"limit": 500})
    assert response.status_code == 200 and len(response.json()["data"]) == 1


async def test_retry_puts_the_item_back_on_the_queue_due_now_with_failures_reset(
    db_url: str, client: Client
) -> None:
    run_id = new_ulid()
    dead = await bury(db_url, "poison", run_id=run_id, attempt=1)
    response = await client.post(f"/v1/dead-letters/{dead}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"id": dead, "outcome": "requeued"}
    # Failures reset, not leased, due now; the run's SDK attempt is kept.
    assert await queued(db_url, "poison") == (0, None, True, 1)
    assert (await client.get("/v1/dead-letters")).json()["data"] == []
    again = await client.post(f"/v1/dead-letters/{dead}/retry")
    assert again.status_code == 404
    assert again.json() == {"error": "Dead letter not found", "status": 404, "data": None}


async def test_retry_of_a_job_queued_again_meanwhile_only_drops_the_dead_letter(
    db_url: str, client: Client
) -> None:
    dead = await bury(db_url, "twice")
    now = SystemClock().now_ms()
    conn = await connect(db_url)
    try:
        spec = ItemSpec(kind=ItemKind.EDGE, job_id="twice", available_at=now + 60_000)
        await q.enqueue_items(conn, [spec], now)
    finally:
        await conn.close()
    response = await client.post(f"/v1/dead-letters/{dead}/retry")
    assert response.json()["data"] == {"id": dead, "outcome": "already-queued"}
    assert (await client.get("/v1/dead-letters")).json()["data"] == []
    assert await queued(db_url, "twice") == (0, None, False, 0)  # the newer item, untouched


async def test_discard_drops_the_dead_letter_for_good(db_url: str, client: Client) -> None:
    dead = await bury(db_url, "gone")
    kept = await bury(db_url, "kept")
    response = await client.delete(f"/v1/dead-letters/{dead}")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"id": dead, "discarded": True}
    assert [d["id"] for d in (await client.get("/v1/dead-letters")).json()["data"]] == [kept]
    assert await queued(db_url, "gone") is None
    assert (await client.delete(f"/v1/dead-letters/{dead}")).status_code == 404
    assert (await client.post(f"/v1/dead-letters/{dead}/retry")).status_code == 404


@pytest.mark.parametrize(
    "bad", ["abc", "0", "-1", "1.5", "99999999999999999999", "%D9%A1%D9%A2", "%20"]
)
async def test_malformed_ids_are_400(client: Client, bad: str) -> None:
    for response in (
        await client.post(f"/v1/dead-letters/{bad}/retry"),
        await client.delete(f"/v1/dead-letters/{bad}"),
    ):
        assert response.status_code == 400, (bad, response.text)
        assert "Invalid dead letter ID" in response.json()["error"]


async def test_unknown_ids_are_404(client: Client) -> None:
    assert (await client.post("/v1/dead-letters/12345/retry")).status_code == 404
    assert (await client.delete("/v1/dead-letters/12345")).status_code == 404


async def test_the_openapi_document_describes_the_dead_letter_routes(client: Client) -> None:
    paths = (await client.get("/openapi/openapi.json")).json()["paths"]
    listing = paths["/v1/dead-letters"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "cursor", "run_id"}
    assert set(listing["responses"]) == {"200", "400", "401", "503"}
    assert set(paths["/v1/dead-letters/{dead_letter_id}/retry"]["post"]["responses"]) >= {
        "200", "400", "404",
    }  # fmt: skip
    assert "delete" in paths["/v1/dead-letters/{dead_letter_id}"]


async def test_self_hosted_dead_letter_routes_need_the_signing_key(db_url: str) -> None:
    dead = await bury(db_url, "secret")
    app = create_app(
        Settings(run_workers=False, mode="start", signing_key=KEY, event_keys=("k",)), db_url
    )
    async with AsyncTestClient(app) as c:
        for method, path in (
            ("GET", "/v1/dead-letters"),
            ("POST", f"/v1/dead-letters/{dead}/retry"),
            ("DELETE", f"/v1/dead-letters/{dead}"),
        ):
            denied = await c.request(method, path)
            assert denied.status_code == 401, path
            assert denied.json()["error"] == "unauthorized"
        allowed = await c.get("/v1/dead-letters", headers={"Authorization": f"Bearer {KEY}"})
        assert allowed.status_code == 200
        assert [d["id"] for d in allowed.json()["data"]] == [dead]
