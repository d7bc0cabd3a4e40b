"""``POST /v1/runs/{run_id}/metadata`` against a real PostgreSQL: what it records, what it
refuses (and that a refusal changes nothing), self-hosted auth, and what GraphQL shows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.metadata import MAX_BODY_BYTES
from app.store.history import load_history
from domain import history as h
from domain import metadata as md
from domain.ids import new_ulid
from tests.integration.test_graphql import (
    T0,
    Runs,
    build_app,
    data,
    seed_app,
    services,
    step,
)

Client = AsyncTestClient[Litestar]
KEY = "signkey-test-abcd1234"
STEP = "charge card"
HASHED = hashlib.sha1(STEP.encode()).hexdigest()

METADATA = "metadata { scope kind values updatedAt }"
TRACE = f"""query($id: String!) {{ runTrace(runID: $id) {{ name {METADATA}
  childrenSpans {{ name stepID {METADATA} }} }} }}"""


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(build_app(db_url)) as c:
        yield c


@pytest.fixture
async def runs(client: Client) -> Runs:
    return Runs(client, await seed_app(client), services(client))


async def running(runs: Runs) -> str:
    return await runs.run("shop-checkout", h.RunStarted(at=T0 + 1), step(HASHED, STEP, 1, T0 + 5))


async def history(client: Client, run_id: str) -> list[h.HistoryEvent]:
    async with services(client).db.connection() as conn:
        return await load_history(conn, run_id)


def body(*updates: dict[str, Any], **target: Any) -> dict[str, Any]:
    return {"target": target, "metadata": list(updates)}


def update(values: Any, kind: str = "userland.default", op: str = "set") -> dict[str, Any]:
    return {"kind": kind, "op": op, "values": values}


async def test_metadata_is_recorded_once_and_shown_on_the_targeted_spans(
    client: Client, runs: Runs
) -> None:
    run_id = await running(runs)
    url = f"/v1/runs/{run_id}/metadata"
    on_step = body(update({"amount": 3}), update({"tries": 1}, "userland.stats"), step_id=STEP)
    response = await client.post(
        url, json={**on_step, "target": {"run_id": run_id, "step_id": STEP}}
    )
    assert (response.status_code, response.content) == (200, b"")
    on_run = await client.post(url, json=body(update({"amount": 2}, op="add"), run_id=run_id))
    assert on_run.status_code == 200
    again = await client.post(url, json=body(update({"amount": 2}, op="add"), run_id=run_id))
    assert again.status_code == 200

    added = [e for e in await history(client, run_id) if isinstance(e, h.MetadataAdded)]
    assert [(e.scope, e.step_id, e.kind, e.source) for e in added] == [
        ("step", HASHED, "userland.default", "api"),
        ("step", HASHED, "userland.stats", "api"),
        ("run", None, "userland.default", "api"),
        ("run", None, "userland.default", "api"),
    ]

    trace = (await data(client, TRACE, id=run_id))["runTrace"]
    [root_md] = trace["metadata"]
    assert (root_md["scope"], root_md["kind"], root_md["values"]) == (
        "run",
        "userland.default",
        {"amount": 4},  # two "add" updates combined
    )
    assert root_md["updatedAt"].endswith("Z")
    [span] = [s for s in trace["childrenSpans"] if s["stepID"] == HASHED]
    assert [(m["kind"], m["values"]) for m in span["metadata"]] == [
        ("userland.default", {"amount": 3}),
        ("userland.stats", {"tries": 1}),
    ]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"{not json", 400, ""),
        ([1, 2], 400, "the body must be a JSON object"),
        (body(update({"a": 1}), step_index=1), 400, "target.step_id must be defined"),
        (body(update({"a": 1}), span_id="ab"), 400, "target.step_id must be defined"),
        (body(), 400, "non-empty array"),
        (body(update({"a": 1}, kind="inngest.internal")), 400, "not in the allowlist"),
        (body(update({"a": 1}, kind="k" * 129)), 400, "kind exceeds maximum length"),
        (body(update({"a": 1}, op="replace")), 400, "op must be one of"),
        (body(update([1])), 400, "values must be an object"),
        (body({"values": {"a": 1}}), 400, "kind must be a non-empty string"),
        (body(update({"s": {"value": "x"}}, kind="inngest.score")), 400, "invalid score value"),
        (body(update({"blob": "x" * md.MAX_SPAN_BYTES})), 413, "exceeds maximum size of 64KB"),
        (
            body(
                *[
                    update({"b": "x" * (md.MAX_SPAN_BYTES - 100)}, f"userland.k{i}")
                    for i in range(17)
                ]
            ),
            413,
            "Cumulative metadata size exceeds limit",
        ),
        (body(*[update({}, f"userland.k{i}") for i in range(101)]), 413, "at most 100 updates"),
    ],
)
async def test_bad_requests_get_the_error_envelope_and_change_nothing(
    client: Client, runs: Runs, payload: Any, status: int, message: str
) -> None:
    run_id = await running(runs)
    before = await history(client, run_id)
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = await client.post(
        f"/v1/runs/{run_id}/metadata", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    envelope = response.json()
    assert envelope["status"] == status and message in envelope["error"]
    assert await history(client, run_id) == before


async def test_an_oversized_body_is_refused_before_it_is_read_whole(
    client: Client, runs: Runs
) -> None:
    run_id = await running(runs)
    huge = json.dumps(body(update({"b": "x" * MAX_BODY_BYTES}))).encode()
    response = await client.post(
        f"/v1/runs/{run_id}/metadata", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "max size" in response.json()["error"]


async def test_unknown_ended_and_malformed_runs_are_refused(client: Client, runs: Runs) -> None:
    payload = body(update({"a": 1}))
    bad = await client.post("/v1/runs/not-a-ulid/metadata", json=payload)
    assert (bad.status_code, bad.json()["error"]) == (400, "Invalid run ID: not-a-ulid")
    unknown = await client.post(f"/v1/runs/{new_ulid(T0)}/metadata", json=payload)
    assert unknown.status_code == 404 and "not found" in unknown.json()["error"]
    ended = await runs.run(
        "shop-checkout", h.RunStarted(at=T0 + 1), h.RunCompleted(at=T0 + 2, output=1)
    )
    closed = await client.post(f"/v1/runs/{ended}/metadata", json=payload)
    assert closed.status_code == 409 and "has ended" in closed.json()["error"]
    assert not any(isinstance(e, h.MetadataAdded) for e in await history(client, ended))


async def test_self_hosted_metadata_needs_the_signing_key(db_url: str) -> None:
    app = build_app(db_url, mode="start", signing_key=KEY, event_keys=("k",))
    headers = {"Authorization": f"Bearer {KEY}"}
    async with AsyncTestClient(app) as c:
        c.headers.update(headers)
        run_id = await running(Runs(c, await seed_app(c), services(c)))
        del c.headers["Authorization"]
        payload = body(update({"a": 1}))
        denied = await c.post(f"/v1/runs/{run_id}/metadata", json=payload)
        assert (denied.status_code, denied.json()["error"]) == (401, "unauthorized")
        allowed = await c.post(f"/v1/runs/{run_id}/metadata", json=payload, headers=headers)
        assert allowed.status_code == 200
        added = [e for e in await history(c, run_id) if isinstance(e, h.MetadataAdded)]
        assert len(added) == 1
