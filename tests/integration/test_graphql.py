"""``POST /v0/gql`` against a real PostgreSQL: apps, runs, traces, events and the mutations.

Runs are produced by committing real history through ``commit_transition`` (and, for cancel
and rerun, by the engine's own ``run_command``), then read back the way clients read them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import inngest
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.engine.transitions import pause_key
from app.graphql import PATH, ROUTES
from app.main import Services, create_app
from app.settings import Settings
from app.store.events import insert_events, received
from app.store.history import load_history
from app.store.transitions import Transition, commit_transition
from domain import history as h
from domain.effects import Decision
from domain.ids import new_ulid


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


Client = AsyncTestClient[Litestar]
URL = "http://127.0.0.1:8000/api/inngest"
KEY = "signkey-test-" + "ab" * 32
KEY_HASH = hashlib.sha256(bytes.fromhex("ab" * 32)).hexdigest()
T0 = 1_760_000_000_000  # 2025-10-09T08:53:20Z: in the past, as runs listings want


def build_app(db_url: str, **settings: Any) -> Litestar:
    base: dict[str, Any] = {"run_workers": False, "discovery": False, "poll": False}
    app = create_app(Settings(**{**base, **settings}), db_url)
    if not any(route.path == PATH for route in app.routes):
        for handler in ROUTES:
            app.register(handler)
    return app


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(build_app(db_url)) as c:
        yield c


def services(client: Client) -> Services:
    found: Services = client.app.state.services
    return found


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post(PATH, json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def data(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    body = await gql(client, query, **variables)
    assert "errors" not in body, body["errors"]
    found: dict[str, Any] = body["data"]
    return found


async def error(client: httpx.AsyncClient, query: str, **variables: Any) -> str:
    body = await gql(client, query, **variables)
    assert body.get("errors"), body
    return str(body["errors"][0]["message"])


def fn_config(slug: str, event: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": slug,
        "name": slug.title(),
        "triggers": [{"event": event}],
        "steps": {"step": {"id": "step", "name": "step",
                           "runtime": {"type": "http", "url": f"{URL}?fnId={slug}&stepId=step"}}},
        **extra,
    }  # fmt: skip


async def seed_app(client: httpx.AsyncClient) -> dict[str, str]:
    """Register app ``shop`` with two functions; return function slug -> id."""
    body = {
        "appname": "shop", "deploy_type": "ping", "framework": "fast_api", "sdk": "py:v0.5.19",
        "url": URL, "v": "0.1",
        "functions": [
            fn_config("shop-checkout", "shop/order", retries=2,
                      rateLimit={"limit": 5, "period": "1m"}, concurrency=[{"limit": 3}]),
            fn_config("shop-refund", "shop/refund"),
        ],
    }  # fmt: skip
    response = await client.post("/fn/register", content=json.dumps(body).encode())
    assert response.status_code == 200, response.text
    found = await data(client, "{ functions { id slug } }")
    return {f["slug"]: f["id"] for f in found["functions"]}


class Runs:
    """Writes runs through the same transition commit the engine uses."""

    def __init__(
        self, client: httpx.AsyncClient, functions: dict[str, str], services: Services
    ) -> None:
        self.client = client
        self.functions = functions
        self.services = services
        self._app_id: str | None = None

    async def event(self, name: str, data: dict[str, Any], ts: int = T0) -> str:
        internal_id = new_ulid(ts)
        async with self.services.db.connection() as conn, conn.transaction():
            event = {"name": name, "data": data, "user": {}, "id": internal_id, "ts": ts}
            await insert_events(conn, [(internal_id, event)], received(ts), ts)
        return internal_id

    async def run(self, slug: str, *events: h.HistoryEvent, at: int = T0, **data: Any) -> str:
        name = "shop/order" if slug == "shop-checkout" else "shop/refund"
        event_id = await self.event(name, data, ts=at)
        run_id = new_ulid(at)
        scheduled = h.RunScheduled(
            at=at, run_id=run_id, function_id=self.functions[slug], function_slug=slug,
            function_version=1, app_id=await self.app_id(),
            events=({"name": name, "data": data, "user": {}, "id": event_id, "ts": at},),
            event_ids=(event_id,), idempotency_key=event_id, max_attempts=3,
        )  # fmt: skip
        history = [scheduled, *events]
        async with self.services.db.connection() as conn:
            decision = Decision(history, [])
            await commit_transition(conn, Transition.on(run_id, [], decision, None, at), pause_key)
        return run_id

    async def app_id(self) -> str:
        if self._app_id is None:
            found = await data(self.client, "{ apps { id name } }")
            self._app_id = str(next(a["id"] for a in found["apps"] if a["name"] == "shop"))
        return self._app_id


def step(step_id: str, name: str, value: Any, at: int, attempt: int = 0) -> h.StepCompleted:
    return h.StepCompleted(at=at, step_id=step_id, name=name, output={"data": value},
                           attempt=attempt, started_at=at - 3)  # fmt: skip


def completed_history(at: int = T0) -> list[h.HistoryEvent]:
    return [
        h.RunStarted(at=at + 1),
        step("ha", "a", 1, at + 10),
        step("hb", "b", {"x": 2}, at + 20),
        step("hc", "c", [3], at + 30),
        h.RunCompleted(at=at + 40, output="Hello"),
    ]


@pytest.fixture
async def runs(client: Client) -> Runs:
    return Runs(client, await seed_app(client), services(client))


TRACE = """query($id: String!) { run(runID: $id) { id status output triggerIDs eventName
  function { name slug } app { name }
  trace(preview: true) { name status isRoot outputID duration childrenSpans {
    name status stepOp stepID stepType attempts outputID
    childrenSpans { name status outputID } } } } }"""


async def output(client: Client, output_id: str) -> dict[str, Any]:
    found = await data(
        client,
        "query($id: String!) { runTraceSpanOutputByID(outputID: $id) {"
        " data error { name message stack } } }",
        id=output_id,
    )
    result: dict[str, Any] = found["runTraceSpanOutputByID"]
    return result


async def test_apps_and_functions_show_the_synced_configuration(client: Client) -> None:
    functions = await seed_app(client)
    found = await data(
        client,
        """{ apps { id name externalID url method functionCount
        functions { slug } } }""",
    )
    [app] = found["apps"]
    assert (app["name"], app["url"], app["method"], app["functionCount"]) == (
        "shop", URL, "SERVE", 2)  # fmt: skip
    found = await data(client, """query($slug: String!) { functionBySlug(query: {functionSlug:
        $slug}) { id name slug url appID app { name } triggers { type value }
        configuration { retries { value isDefault } rateLimit { limit period }
          concurrency { scope limit { value } } } } }""", slug="shop-checkout")  # fmt: skip
    fn = found["functionBySlug"]
    assert fn["id"] == functions["shop-checkout"] and fn["app"] == {"name": "shop"}
    assert fn["triggers"] == [{"type": "EVENT", "value": "shop/order"}]
    assert fn["configuration"]["retries"] == {"value": 2, "isDefault": False}
    assert fn["configuration"]["rateLimit"] == {"limit": 5, "period": "1m"}
    assert fn["configuration"]["concurrency"] == [{"scope": "FUNCTION", "limit": {"value": 3}}]
    one = await data(client, "query($id: UUID!) { app(id: $id) { name } }", id=app["id"])
    assert one["app"] == {"name": "shop"}


async def test_a_completed_run_has_its_status_output_and_ordered_step_spans(
    client: Client, runs: Runs
) -> None:
    run_id = await runs.run("shop-checkout", *completed_history(), n=1)
    run = (await data(client, TRACE, id=run_id))["run"]
    assert (run["status"], run["output"], run["eventName"]) == (
        "COMPLETED",
        '"Hello"',
        "shop/order",
    )
    assert run["function"] == {"name": "Shop-Checkout", "slug": "shop-checkout"}
    trace = run["trace"]
    assert trace["isRoot"] and trace["name"] == "Shop-Checkout" and trace["status"] == "COMPLETED"
    assert [s["name"] for s in trace["childrenSpans"]] == ["a", "b", "c", "Finalization"]
    a, b, _, final = trace["childrenSpans"]
    assert (a["stepOp"], a["stepID"], a["stepType"], a["attempts"]) == ("RUN", "ha", "RUN", 0)
    assert json.loads((await output(client, b["outputID"]))["data"]) == {"x": 2}
    assert json.loads((await output(client, final["outputID"]))["data"]) == "Hello"
    assert json.loads((await output(client, trace["outputID"]))["data"]) == "Hello"


async def test_a_failed_step_and_run_expose_errors_with_name_message_and_stack(
    client: Client, runs: Runs
) -> None:
    err = {"name": "RuntimeError", "message": "broken", "stack": "Traceback: …"}
    retry = h.StepErrored(at=T0 + 10, step_id="hf", name="fail", attempt=0, error=err,
                          retry_at=T0 + 100, started_at=T0 + 5)  # fmt: skip
    final = h.StepFailed(at=T0 + 200, step_id="hf", name="fail", attempt=1, error=err,
                         started_at=T0 + 150)  # fmt: skip
    run_id = await runs.run(
        "shop-checkout", h.RunStarted(at=T0 + 1), retry, final, h.RunFailed(at=T0 + 210, error=err)
    )
    run = (await data(client, TRACE, id=run_id))["run"]
    assert run["status"] == "FAILED" and json.loads(run["output"]) == err
    failed, finalization = run["trace"]["childrenSpans"]
    assert (failed["name"], failed["status"], failed["attempts"]) == ("fail", "FAILED", 1)
    assert [c["name"] for c in failed["childrenSpans"]] == ["Attempt 0", "Attempt 1"]
    assert (await output(client, failed["outputID"]))["error"] == err
    first_attempt = failed["childrenSpans"][0]["outputID"]
    assert (await output(client, first_attempt))["error"]["message"] == "broken"
    assert finalization["status"] == "FAILED"
    assert (await output(client, finalization["outputID"])) == {"data": None, "error": err}


async def test_unknown_or_malformed_ids_are_errors_not_nulls(client: Client) -> None:
    unknown = new_ulid()
    for query in (
        "query($id: String!) { run(runID: $id) { id } }",
        "query($id: String!) { runTrace(runID: $id) { name } }",
        "query($id: String!) { runTrigger(runID: $id) { IDs } }",
    ):
        assert "not found" in await error(client, query, id=unknown)
        assert "ULID" in await error(client, query, id="nope")
    assert "not found" in await error(
        client, "query($id: ID!) { event(query: {eventId: $id}) { id } }", id=unknown
    )
    assert "not found" in await error(
        client, "query($id: ULID!) { eventV2(id: $id) { id } }", id=unknown
    )
    assert await error(
        client, "query($id: String!) { runTraceSpanOutputByID(outputID: $id) { data } }", id="x"
    )


async def test_run_trigger_payloads_are_sdk_events_with_integer_ts(
    client: Client, runs: Runs
) -> None:
    run_id = await runs.run("shop-checkout", *completed_history(), order=7)
    found = await data(client, """query($id: String!) { runTrigger(runID: $id) {
        eventName IDs payloads timestamp isBatch } }""", id=run_id)  # fmt: skip
    trigger = found["runTrigger"]
    assert trigger["eventName"] == "shop/order" and trigger["isBatch"] is False
    event = inngest.Event.model_validate_json(trigger["payloads"][0])
    assert (event.name, dict(event.data), event.ts) == ("shop/order", {"order": 7}, T0)
    assert event.id == trigger["IDs"][0] and trigger["timestamp"] == iso(T0)


async def test_event_lookups_list_the_runs_the_event_started(client: Client, runs: Runs) -> None:
    run_id = await runs.run("shop-checkout", *completed_history())
    row = await data(client, "query($id: String!) { run(runID: $id) { triggerIDs } }", id=run_id)
    [event_id] = row["run"]["triggerIDs"]
    found = await data(client, """query($id: ID!) { event(query: {eventId: $id}) {
        id name payload status totalRuns functionRuns { id status function { name } } } }""",
        id=event_id)  # fmt: skip
    event = found["event"]
    assert (event["name"], json.loads(event["payload"]), event["status"]) == (
        "shop/order", {}, "COMPLETED")  # fmt: skip
    assert event["functionRuns"] == [
        {"id": run_id, "status": "COMPLETED", "function": {"name": "Shop-Checkout"}}
    ]
    v2 = await data(client, "query($id: ULID!) { eventV2(id: $id) { name raw runs { id } } }",
                    id=event_id)  # fmt: skip
    assert json.loads(v2["eventV2"]["raw"])["ts"] == T0 and v2["eventV2"]["runs"] == [
        {"id": run_id}
    ]
    stream = await data(client, """{ stream(query: {limit: 999, includeInternalEvents: false}) {
        id trigger type runs { id function { name } } } }""")  # fmt: skip
    assert stream["stream"] == [
        {
            "id": event_id,
            "trigger": "shop/order",
            "type": "EVENT",
            "runs": [{"id": run_id, "function": {"name": "Shop-Checkout"}}],
        }
    ]
    listed = await data(client, "{ events(query: {}) { id name } }")
    assert listed["events"] == [{"id": event_id, "name": "shop/order"}]
    fr = await data(client, """query($id: ID!) { functionRun(query: {functionRunId: $id}) {
        id status output eventID event { id } } }""", id=run_id)  # fmt: skip
    assert fr["functionRun"] == {"id": run_id, "status": "COMPLETED", "output": '"Hello"',
                                 "eventID": event_id, "event": {"id": event_id}}  # fmt: skip


RUNS = """query($first: Int!, $after: String, $filter: RunsFilterV2!, $order: [RunsV2OrderBy!]!) {
  runs(first: $first, after: $after, filter: $filter, orderBy: $order) {
    totalCount edges { cursor node { id status functionID } }
    pageInfo { hasNextPage endCursor } } }"""
FROM = "2025-10-01T00:00:00Z"


async def test_runs_are_filtered_ordered_and_paged_by_cursor(client: Client, runs: Runs) -> None:
    ids = [await runs.run("shop-checkout", *completed_history(T0 + i * 1000), at=T0 + i * 1000,
                          n=i) for i in range(7)]  # fmt: skip
    running = await runs.run("shop-checkout", h.RunStarted(at=T0 + 9000), at=T0 + 9000, n=99)
    refund = await runs.run("shop-refund", *completed_history(T0 + 500), at=T0 + 500)
    checkout = runs.functions["shop-checkout"]
    filt = {"from": FROM, "status": ["COMPLETED"], "functionIDs": [checkout]}
    order = [{"field": "QUEUED_AT", "direction": "DESC"}]
    seen: list[str] = []
    after = None
    while True:
        page = (await data(client, RUNS, first=3, after=after, filter=filt, order=order))["runs"]
        assert page["totalCount"] == 7
        seen += [e["node"]["id"] for e in page["edges"]]
        assert {e["node"]["status"] for e in page["edges"]} == {"COMPLETED"}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(ids))
    asc = [{"field": "QUEUED_AT", "direction": "ASC"}]
    everything = {"from": FROM}
    page = (await data(client, RUNS, first=20, after=None, filter=everything, order=asc))["runs"]
    assert page["totalCount"] == 9
    assert [e["node"]["id"] for e in page["edges"]] == [ids[0], refund, *ids[1:], running]
    window = {"from": iso(T0 + 3000), "until": iso(T0 + 5000)}
    page = (await data(client, RUNS, first=20, after=None, filter=window, order=asc))["runs"]
    assert [e["node"]["id"] for e in page["edges"]] == ids[3:5]
    query = {"from": FROM, "query": "event.data.n == 4 || event.data.n == 99"}
    page = (await data(client, RUNS, first=20, after=None, filter=query, order=asc))["runs"]
    assert [e["node"]["id"] for e in page["edges"]] == [ids[4], running]
    assert page["totalCount"] == 2
    bad = await error(client, RUNS, first=3, after="garbage", filter=filt, order=order)
    assert "cursor" in bad
    other = await error(client, RUNS, first=3, after=page["edges"][0]["cursor"], filter=filt,
                        order=order)  # fmt: skip
    assert "ordering" in other
    assert "invalid query" in await error(
        client,
        RUNS,
        first=3,
        after=None,
        filter={"from": FROM, "query": "event.data.n =="},
        order=order,
    )


async def test_cancel_run_is_idempotent_and_refuses_ended_runs(client: Client, runs: Runs) -> None:
    nap = h.SleepStarted(at=T0 + 5, step_id="z", name="nap", until=T0 + 3_600_000)
    sleeping = await runs.run("shop-checkout", h.RunStarted(at=T0 + 1), nap)
    cancel = "mutation($id: ULID!) { cancelRun(runID: $id) { id status finishedAt } }"
    first = (await data(client, cancel, id=sleeping))["cancelRun"]
    assert first["status"] == "CANCELLED" and first["finishedAt"]
    again = (await data(client, cancel, id=sleeping))["cancelRun"]
    assert again == first
    trace = (await data(client, TRACE, id=sleeping))["run"]["trace"]
    assert trace["status"] == "CANCELLED"
    assert [(s["name"], s["status"]) for s in trace["childrenSpans"]] == [("nap", "CANCELLED")]
    done = await runs.run("shop-checkout", *completed_history())
    assert await error(client, cancel, id=done) == "cannot cancel an ended run"
    assert "not found" in await error(client, cancel, id=new_ulid())


async def test_rerun_starts_a_new_run_with_the_same_events_and_memos_before_the_step(
    client: Client, runs: Runs
) -> None:
    original = await runs.run("shop-checkout", *completed_history(), n=5)
    rerun = "mutation($id: ULID!, $from: RerunFromStepInput) { rerun(runID: $id, fromStep: $from) }"
    plain = (await data(client, rerun, id=original, **{"from": None}))["rerun"]
    from_b = (await data(client, rerun, id=original, **{"from": {"stepID": "b"}}))["rerun"]
    async with services(client).db.connection() as conn:
        old = await load_history(conn, original)
        [plain_start] = await load_history(conn, plain)
        [from_b_start] = await load_history(conn, from_b)
    assert isinstance(old[0], h.RunScheduled)
    for start in (plain_start, from_b_start):
        assert isinstance(start, h.RunScheduled)
        assert start.events == old[0].events and start.event_ids == old[0].event_ids
        assert start.original_run_id == original and start.run_id != original
    assert isinstance(plain_start, h.RunScheduled) and plain_start.steps == {}
    assert isinstance(from_b_start, h.RunScheduled) and from_b_start.steps == {"ha": {"data": 1}}
    by_id = (await data(client, rerun, id=original, **{"from": {"stepID": "hc"}}))["rerun"]
    async with services(client).db.connection() as conn:
        [by_id_start] = await load_history(conn, by_id)
    assert isinstance(by_id_start, h.RunScheduled)
    assert list(by_id_start.steps) == ["ha", "hb"]
    assert "not found" in await error(client, rerun, id=original, **{"from": {"stepID": "zz"}})
    listed = await data(client, "query($id: String!) { run(runID: $id) { status } }", id=plain)
    assert listed["run"]["status"] == "QUEUED"


async def test_invoke_function_emits_an_invoked_event_for_the_function(
    client: Client, runs: Runs
) -> None:
    mutation = """mutation($slug: String!, $data: Map) {
        invokeFunction(functionSlug: $slug, data: $data) }"""
    assert (await data(client, mutation, slug="shop-refund", data={"x": 1}))["invokeFunction"]
    found = await data(client, "{ events(query: {}) { name raw } }")
    [event] = [e for e in found["events"] if e["name"] == "inngest/function.invoked"]
    raw = json.loads(event["raw"])
    assert raw["data"]["x"] == 1 and raw["data"]["_inngest"]["fn_id"] == "shop-refund"
    assert "not found" in await error(client, mutation, slug="shop-nope", data=None)


async def test_create_app_reports_an_unreachable_url(client: Client) -> None:
    message = await error(client, 'mutation { createApp(input: {url: "127.0.0.1:9"}) { id } }')
    assert message == "unreachable"
    found = await data(client, "{ apps { url error } }")
    assert {"url": "http://127.0.0.1:9", "error": "unreachable"} in found["apps"]


async def test_self_hosted_graphql_requires_the_signing_key(db_url: str) -> None:
    app = build_app(db_url, mode="start", signing_key=KEY, event_keys=("evt",))
    async with AsyncTestClient(app) as c:
        denied = await c.post(PATH, json={"query": "{ apps { id } }"})
        assert denied.status_code == 401
        allowed = await c.post(
            PATH, json={"query": "{ apps { id } }"}, headers={"Authorization": f"Bearer {KEY_HASH}"}
        )
        assert allowed.status_code == 200 and allowed.json() == {"data": {"apps": []}}


async def test_graphiql_is_served_on_get_in_dev_mode(client: Client) -> None:
    page = await client.get(PATH, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
