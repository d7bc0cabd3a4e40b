"""Bad input against every public endpoint: a clear 4xx, never a 5xx, and nothing changes.

Architecture §10: malformed JSON, wrong types, oversized bodies, unknown or malformed ids, bad
signatures and event keys each get a 4xx in the protocol's error envelope (``{"error": msg,
"status": n, ...}``; GraphQL answers 200/400 with ``errors``), and leave the database exactly as
it was — checked by fingerprinting every table before and after each request.
"""

# The case tables keep one request per line, however long, so they read as tables.
# ruff: noqa: E501

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http import cancellations
from app.http.events import INVOKE_MAX_BODY_BYTES
from app.main import create_app
from app.settings import Settings
from domain.events import MAX_BODY_BYTES

Client = AsyncTestClient[Litestar]
SIGNING_KEY = "signkey-test-12345678"
EVENT_KEY = "k"
UNKNOWN = "01KBKA0ZM0000000000000ZZZZ"  # a well-formed ULID nothing has
TABLES = (
    "events", "apps", "functions", "function_versions", "function_triggers", "run_history",
    "queue_items", "pauses", "cancellations", "runs", "run_idempotency",
)  # fmt: skip
APP_URL = "http://127.0.0.1:9/api/inngest"
MIB = 1024 * 1024
NUL = "\u0000"  # JSON allows it; PostgreSQL text cannot hold it
DEEP = b"[" * 100_000 + b"]" * 100_000  # deeper than any JSON decoder recurses
NOT_UTF8 = b'{"name": "\xff\xfe", "query": "\xff"}'


def function(slug: str = "seed-fn", **extra: Any) -> dict[str, Any]:
    return {
        "id": slug,
        "name": slug,
        "triggers": [{"event": "bad/input"}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": f"{APP_URL}?fnId={slug}&stepId=step"},
                "retries": {"attempts": 1},
            }
        },
        **extra,
    }


def register_body(functions: Any = None, **extra: Any) -> dict[str, Any]:
    body = {"appName": "seed", "url": APP_URL, "sdk": "py:v0.5.18", "framework": "fast_api"}
    return {**body, "v": "0.1", "functions": functions or [function()], **extra}


@dataclass(frozen=True)
class Case:
    label: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    statuses: frozenset[int] = frozenset({400})
    graphql: bool = False


def jcase(label: str, method: str, path: str, payload: Any, **kw: Any) -> Case:
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return Case(label, method, path, json.dumps(payload).encode(), headers, **kw)


def s(*codes: int) -> frozenset[int]:
    return frozenset(codes)


async def fingerprint(db_url: str) -> dict[str, str]:
    """Each table's row count and a digest of its rows: any insert, update or delete shows."""
    out: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        for table in TABLES:
            cur = await conn.execute(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' "
                f"ORDER BY t::text)), '') FROM {table} t"
            )
            row = await cur.fetchone()
            assert row is not None
            out[table] = str(row[0])
    return out


def judge(case: Case, status: int, raw: bytes) -> str | None:
    """What is wrong with the answer to ``case``, or None."""
    if status >= 500 or status not in case.statuses:
        return f"status {status} (expected {sorted(case.statuses)}): {raw[:300]!r}"
    try:
        body = json.loads(raw)
    except ValueError:
        return f"answer is not JSON: {raw[:200]!r}"
    if case.graphql and isinstance(body, dict) and body.get("errors"):
        message = body["errors"][0].get("message")
        return None if isinstance(message, str) and message else f"empty GraphQL error: {body}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return f"no error message in {body!r:.300}"
    if body.get("status") != status:
        return f"envelope status {body.get('status')!r} != HTTP {status}"
    return None


async def check(client: Client, db_url: str, cases: Sequence[Case]) -> None:
    problems: list[str] = []
    for case in cases:
        before = await fingerprint(db_url)
        response = await client.request(
            case.method, case.path, content=case.body, headers=case.headers
        )
        problem = judge(case, response.status_code, response.content)
        after = await fingerprint(db_url)
        changed = [t for t in TABLES if before[t] != after[t]]
        if changed:
            problem = f"{problem or 'answer ok'}; but it changed {changed}"
        if problem:
            problems.append(f"{case.label} ({case.method} {case.path[:60]}): {problem}")
    assert not problems, "\n".join(problems)


async def seed(client: Client, headers: dict[str, str] | None = None, key: str = "dev") -> None:
    """A registered app and one stored event, so that tables are not trivially empty."""
    registered = await client.post("/fn/register", json=register_body(), headers=headers or {})
    assert registered.status_code == 200, registered.text
    sent = await client.post(f"/e/{key}", json={"name": "bad/input", "data": {}})
    assert sent.status_code == 200, sent.text


@pytest.fixture
async def dev(db_url: str) -> AsyncIterator[Client]:
    app = create_app(Settings(run_workers=False, discovery=False, poll=False), db_url)
    async with AsyncTestClient(app=app) as client:
        await seed(client)
        yield client


@pytest.fixture
async def hosted(db_url: str) -> AsyncIterator[Client]:
    settings = Settings(
        mode="start", signing_key=SIGNING_KEY, event_keys=(EVENT_KEY,), run_workers=False
    )
    async with AsyncTestClient(app=create_app(settings, db_url)) as client:
        await seed(client, {"Authorization": f"Bearer {SIGNING_KEY}"}, EVENT_KEY)
        yield client


async def test_malformed_registrations_are_refused_with_400_and_change_nothing(
    dev: Client, db_url: str
) -> None:
    bad_step = function("bad-step")
    bad_step["steps"]["step"]["runtime"]["url"] = "ftp://127.0.0.1/x"
    cases = [
        Case("not JSON", "POST", "/fn/register", b"{not json"),
        Case("empty body", "POST", "/fn/register", b""),
        jcase("an array", "POST", "/fn/register", [register_body()]),
        jcase("a string", "POST", "/fn/register", "register me"),
        jcase("null", "POST", "/fn/register", None),
        jcase("appName not a string", "POST", "/fn/register", register_body(appName=5)),
        jcase("empty appName", "POST", "/fn/register", register_body(appName="")),
        jcase("functions not a list", "POST", "/fn/register", {**register_body(), "functions": "x"}),
        jcase("no functions", "POST", "/fn/register", {**register_body(), "functions": []}),
        jcase("function not an object", "POST", "/fn/register", register_body([42])),
        jcase("function id a number", "POST", "/fn/register", register_body([function() | {"id": 7}])),
        jcase("triggers not a list", "POST", "/fn/register", register_body([function(triggers="x")])),
        jcase("steps not an object", "POST", "/fn/register", register_body([function(steps=[1])])),
        jcase("step URL scheme", "POST", "/fn/register", register_body([bad_step])),
        jcase("bad cron", "POST", "/fn/register", register_body([function(triggers=[{"cron": "61 * * * *"}])])),
        jcase("bad CEL", "POST", "/fn/register", register_body([function(triggers=[{"event": "a", "expression": "event.data.x ==="}])])),
        jcase("concurrency wrong type", "POST", "/fn/register", register_body([function(concurrency="lots")])),
        jcase("rateLimit limit 0", "POST", "/fn/register", register_body([function(rateLimit={"limit": 0, "period": "1h"})])),
        jcase("retries attempts a string", "POST", "/fn/register", register_body([function() | {"steps": {"step": {**function()["steps"]["step"], "retries": {"attempts": "many"}}}}])),
        jcase("wrong server kind", "POST", "/fn/register", register_body(), headers={"X-Inngest-Expected-Server-Kind": "cloud"}),
        Case("nested too deeply", "POST", "/fn/register", DEEP),
        Case("not UTF-8", "POST", "/fn/register", NOT_UTF8),
        jcase("NUL in appName", "POST", "/fn/register", register_body(appName="seed" + NUL)),
        jcase("NUL in url", "POST", "/fn/register", register_body(url=APP_URL + NUL)),
        jcase("NUL in a function id", "POST", "/fn/register", register_body([function("fn" + NUL)])),
        jcase("NUL in a trigger", "POST", "/fn/register", register_body([function(triggers=[{"event": NUL}])])),
        Case("over 10 MB", "POST", "/fn/register", b'{"appName":"' + b"x" * (11 * MIB) + b'"}', statuses=s(413)),
    ]  # fmt: skip
    await check(dev, db_url, cases)


async def test_malformed_events_are_refused_with_400_and_nothing_is_stored(
    dev: Client, db_url: str
) -> None:
    ok = {"name": "bad/input", "data": {}}
    cases = [
        Case("not JSON", "POST", "/e/dev", b'{"name": "a", '),
        Case("nested too deeply", "POST", "/e/dev", DEEP),
        Case("not UTF-8", "POST", "/e/dev", NOT_UTF8),
        Case("NaN", "POST", "/e/dev", b'{"name": "a", "data": {"x": NaN}}'),
        jcase("a number", "POST", "/e/dev", 42),
        jcase("a string", "POST", "/e/dev", "event"),
        jcase("no name", "POST", "/e/dev", {"data": {}}),
        jcase("name a number", "POST", "/e/dev", {"name": 7}),
        jcase("empty name", "POST", "/e/dev", {"name": ""}),
        jcase("name too long", "POST", "/e/dev", {"name": "n" * 600}),
        jcase("reserved name", "POST", "/e/dev", {"name": "inngest/function.finished"}),
        jcase("data a list", "POST", "/e/dev", {"name": "a", "data": [1, 2]}),
        jcase("data a string", "POST", "/e/dev", {"name": "a", "data": "x"}),
        jcase("user a number", "POST", "/e/dev", {"name": "a", "user": 3}),
        jcase("ts a string", "POST", "/e/dev", {"name": "a", "ts": "yesterday"}),
        jcase("ts in 2200", "POST", "/e/dev", {"name": "a", "ts": 7_258_118_400_000}),
        jcase("id an object", "POST", "/e/dev", {"name": "a", "id": {"x": 1}}),
        jcase("NUL in data", "POST", "/e/dev", {"name": "a", "data": {"x": "\u0000"}}),
        # A bad event after good ones stores the good ones, as upstream does: that partial
        # case is tests/integration/test_event_api_parity.py's; here the bad one comes first.
        jcase("a batch starting with a bad event", "POST", "/e/dev", [{"name": 1}, ok, ok]),
        jcase("a batch starting with a non-object", "POST", "/e/dev", ["x", ok]),
        jcase("event over 3 MiB", "POST", "/e/dev", {"name": "a", "data": {"x": "y" * (3 * MIB)}}),
        Case("body over 32 MiB", "POST", "/e/dev", b"[" + b" " * (33 * MIB) + b"]", statuses=s(413)),
        jcase("no key", "POST", "/e", ok, statuses=s(401)),
        jcase("invoke: not an object", "POST", "/invoke/seed-fn", [1], statuses=s(400)),
        Case("invoke: not JSON", "POST", "/invoke/seed-fn", b"{", statuses=s(400)),
        Case("invoke: nested too deeply", "POST", "/invoke/seed-fn", DEEP),
        Case("invoke: not UTF-8", "POST", "/invoke/seed-fn", NOT_UTF8),
        jcase("invoke: NUL in data", "POST", "/invoke/seed-fn", {"data": {"x": NUL}}),
        jcase("invoke: NUL in the slug", "POST", "/invoke/%00", {}, statuses=s(400, 404)),
        jcase("invoke: unknown function", "POST", "/invoke/no-such-fn", {"data": {}}, statuses=s(404)),
        Case("invoke: body over 6 MiB", "POST", "/invoke/seed-fn", b"{" + b" " * (7 * MIB) + b"}", statuses=s(413)),
    ]  # fmt: skip
    await check(dev, db_url, cases)


async def test_rest_reads_of_unknown_or_malformed_ids_answer_4xx_envelopes(
    dev: Client, db_url: str
) -> None:
    cases = [
        Case("run: bad ULID", "GET", "/v1/runs/not-a-ulid"),
        Case("run: unknown", "GET", f"/v1/runs/{UNKNOWN}", statuses=s(404)),
        Case("run: ULID out of range", "GET", "/v1/runs/ZZZZZZZZZZZZZZZZZZZZZZZZZZ"),
        Case("run jobs: unknown", "GET", f"/v1/runs/{UNKNOWN}/jobs", statuses=s(404)),
        Case("run jobs: bad ULID", "GET", "/v1/runs/%00/jobs"),
        Case("cancel run: bad ULID", "DELETE", "/v1/runs/123"),
        Case("cancel run: unknown", "DELETE", f"/v1/runs/{UNKNOWN}", statuses=s(404)),
        Case("v0 cancel: unknown", "DELETE", f"/v0/runs/{UNKNOWN}", statuses=s(404)),
        Case("event: bad ULID", "GET", "/v1/events/nope"),
        Case("event: unknown", "GET", f"/v1/events/{UNKNOWN}", statuses=s(404)),
        Case("events: limit not a number", "GET", "/v1/events?limit=ten"),
        Case("events: bad cursor", "GET", "/v1/events?cursor=%27%20OR%201=1"),
        Case("events: bad received_after", "GET", "/v1/events?received_after=last-week"),
        Case("app functions: unknown app", "GET", "/v1/apps/no-such-app/functions", statuses=s(404)),
        Case("batch: bad ULID", "GET", "/v0/runs/x/batch"),
        Case("batch: unknown", "GET", f"/v0/runs/{UNKNOWN}/batch", statuses=s(404)),
        Case("actions: unknown", "GET", f"/v0/runs/{UNKNOWN}/actions", statuses=s(404)),
        Case("app functions: NUL in the name", "GET", "/v1/apps/%00/functions", statuses=s(400, 404)),
        Case("events: NUL in the name", "GET", "/v1/events?name=%00", statuses=s(400)),
        Case("event runs: NUL in the id", "GET", "/v1/events/%00/runs"),
        Case("event runs: bad ULID", "GET", "/v1/events/abc/runs"),
        Case("unknown route", "GET", "/v1/nothing-here", statuses=s(404)),
        Case("wrong method", "POST", f"/v1/runs/{UNKNOWN}", statuses=s(405)),
    ]  # fmt: skip
    await check(dev, db_url, cases)


async def test_malformed_cancellations_are_refused_and_create_nothing(
    dev: Client, db_url: str
) -> None:
    valid = {"app_id": "seed", "function_id": "seed-fn", "started_before": "2020-01-01T00:00:00Z"}
    cases = [
        Case("not JSON", "POST", "/v1/cancellations", b"{", {"content-type": "application/json"}),
        jcase("an array", "POST", "/v1/cancellations", [valid]),
        Case("nested too deeply", "POST", "/v1/cancellations", DEEP, {"content-type": "application/json"}),
        Case("not UTF-8", "POST", "/v1/cancellations", NOT_UTF8, {"content-type": "application/json"}),
        jcase("NUL in app_id", "POST", "/v1/cancellations", valid | {"app_id": NUL, "function_id": NUL}, statuses=s(400, 404)),
        jcase("app_id a number", "POST", "/v1/cancellations", valid | {"app_id": 1}),
        jcase("started_before not a time", "POST", "/v1/cancellations", valid | {"started_before": "soon"}),
        jcase("missing fields", "POST", "/v1/cancellations", {}),
        jcase("bad if", "POST", "/v1/cancellations", valid | {"if": "event.data.x ==="}),
        jcase("after later than before", "POST", "/v1/cancellations", valid | {"started_after": "2021-01-01T00:00:00Z"}),
        jcase("unknown function", "POST", "/v1/cancellations", valid | {"function_id": "nope"}, statuses=s(404)),
        jcase("over 1 MiB", "POST", "/v1/cancellations", valid | {"if": "x" * MIB}, statuses=s(413)),
        Case("delete: bad ULID", "DELETE", "/v1/cancellations/xyz"),
        Case("delete: unknown", "DELETE", f"/v1/cancellations/{UNKNOWN}", statuses=s(404)),
    ]  # fmt: skip
    await check(dev, db_url, cases)


async def test_malformed_graphql_requests_get_errors_and_change_nothing(
    dev: Client, db_url: str
) -> None:
    def gql(label: str, payload: Any, statuses: frozenset[int] = s(200)) -> Case:
        return jcase(label, "POST", "/v0/gql", payload, statuses=statuses, graphql=True)

    cases = [
        Case("not JSON", "POST", "/v0/gql", b"{query", graphql=True),
        Case("nested too deeply", "POST", "/v0/gql", DEEP, graphql=True),
        Case("not UTF-8", "POST", "/v0/gql", NOT_UTF8, graphql=True),
        gql("NUL in a slug", {"query": 'mutation { invokeFunction(functionSlug: "\\u0000") }'}),
        gql("an array", [{"query": "{ apps { id } }"}], s(400)),
        gql("query a number", {"query": 5}, s(400)),
        gql("variables a list", {"query": "{ apps { id } }", "variables": [1]}, s(400)),
        gql("syntax error", {"query": "{ apps { id "}),
        gql("unknown field", {"query": "{ nothing }"}),
        gql("deep nesting", {"query": "{" * 5000 + "}" * 5000}, s(200, 400)),
        gql("run: bad ULID", {"query": '{ run(runID: "bad") { id } }'}),
        gql("run: unknown", {"query": f'{{ run(runID: "{UNKNOWN}") {{ id }} }}'}),
        gql("event: unknown", {"query": f'{{ event(query: {{eventId: "{UNKNOWN}"}}) {{ id }} }}'}),
        gql("cancelRun: unknown", {"query": f'mutation {{ cancelRun(runID: "{UNKNOWN}") {{ id }} }}'}),
        gql("cancelRun: bad ULID", {"query": 'mutation { cancelRun(runID: "x") { id } }'}),
        gql("rerun: unknown", {"query": f'mutation {{ rerun(runID: "{UNKNOWN}") }}'}),
        gql("invoke: unknown fn", {"query": 'mutation { invokeFunction(functionSlug: "nope") }'}),
        gql("invoke: data not a map", {"query": 'mutation { invokeFunction(functionSlug: "seed-fn", data: "x") }'}),
        gql("updateApp: unknown", {"query": 'mutation { updateApp(input: {id: "00000000-0000-4000-a000-000000000009", url: "x"}) { id } }'}),
        Case("GET mutation", "GET", "/v0/gql?query=mutation%20%7B%20deleteAppByName(name%3A%22seed%22)%20%7D", statuses=s(405), graphql=True),
    ]  # fmt: skip
    await check(dev, db_url, cases)


async def test_self_hosted_refuses_missing_or_wrong_credentials_with_401(
    hosted: Client, db_url: str
) -> None:
    ok_event = {"name": "bad/input", "data": {}}
    wrong = {"Authorization": "Bearer signkey-test-87654321"}
    cases = [
        jcase("register: no bearer", "POST", "/fn/register", register_body(), statuses=s(401)),
        jcase("register: wrong key", "POST", "/fn/register", register_body(), headers=wrong, statuses=s(401)),
        jcase("register: basic auth", "POST", "/fn/register", register_body(), headers={"Authorization": "Basic Zm9vOmJhcg=="}, statuses=s(401)),
        jcase("register: empty bearer", "POST", "/fn/register", register_body(), headers={"Authorization": "Bearer "}, statuses=s(401)),
        jcase("register: non-hex bearer", "POST", "/fn/register", register_body(), headers={"Authorization": "Bearer signkey-test-zz"}, statuses=s(401)),
        jcase("event: wrong key", "POST", "/e/not-the-key", ok_event, statuses=s(401)),
        jcase("event: no key", "POST", "/e", ok_event, statuses=s(401)),
        jcase("event: key with a suffix", "POST", f"/e/{EVENT_KEY}x", ok_event, statuses=s(401)),
        jcase("invoke: no bearer", "POST", "/invoke/seed-fn", {"data": {}}, statuses=s(401)),
        Case("run: no bearer", "GET", f"/v1/runs/{UNKNOWN}", statuses=s(401)),
        Case("run: wrong bearer", "GET", f"/v1/runs/{UNKNOWN}", headers=wrong, statuses=s(401)),
        Case("cancel run: no bearer", "DELETE", f"/v1/runs/{UNKNOWN}", statuses=s(401)),
        Case("events: no bearer", "GET", "/v1/events", statuses=s(401)),
        Case("app functions: no bearer", "GET", "/v1/apps/seed/functions", statuses=s(401)),
        jcase("cancellation: no bearer", "POST", "/v1/cancellations", {}, statuses=s(401)),
        Case("batch: no bearer", "GET", f"/v0/runs/{UNKNOWN}/batch", statuses=s(401)),
        Case("v0 cancel: no bearer", "DELETE", f"/v0/runs/{UNKNOWN}", statuses=s(401)),
        jcase("gql: no bearer", "POST", "/v0/gql", {"query": "{ apps { id } }"}, statuses=s(401), graphql=True),
        jcase("gql mutation: wrong bearer", "POST", "/v0/gql", {"query": 'mutation { deleteAppByName(name: "seed") }'}, headers=wrong, statuses=s(401), graphql=True),
        Case("dev info is not served", "GET", "/dev", statuses=s(404)),
    ]  # fmt: skip
    await check(hosted, db_url, cases)


async def test_self_hosted_with_a_valid_bearer_still_refuses_bad_input(
    hosted: Client, db_url: str
) -> None:
    auth = {"Authorization": f"Bearer {SIGNING_KEY}"}
    cases = [
        Case("register: not JSON", "POST", "/fn/register", b"[", headers=auth),
        jcase("register: no functions", "POST", "/fn/register", {**register_body(), "functions": []}, headers=auth),
        jcase("register: wrong server kind", "POST", "/fn/register", register_body(), headers=auth | {"X-Inngest-Expected-Server-Kind": "dev"}),
        Case("event: not JSON", "POST", f"/e/{EVENT_KEY}", b"{{"),
        Case("run: bad ULID", "GET", "/v1/runs/x", headers=auth),
        Case("run: unknown", "GET", f"/v1/runs/{UNKNOWN}", headers=auth, statuses=s(404)),
        jcase("gql: unknown run", "POST", "/v0/gql", {"query": f'{{ run(runID: "{UNKNOWN}") {{ id }} }}'}, headers=auth, statuses=s(200), graphql=True),
    ]  # fmt: skip
    await check(hosted, db_url, cases)


#: Every route with a body, and its limit (``/fn/register`` has Litestar's default).
BODY_LIMITS = {
    "/e/dev": MAX_BODY_BYTES,
    "/invoke/seed-fn": INVOKE_MAX_BODY_BYTES,
    "/fn/register": 10_000_000,
    "/v1/cancellations": cancellations.MAX_BODY_BYTES,
}


def _chunks(total: int) -> Iterator[bytes]:
    chunk = b" " * MIB
    for _ in range(total // MIB + 1):
        yield chunk


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_413_however_it_is_sent_and_stores_nothing(
    db_url: str, streamed: bool
) -> None:
    # A real server: Litestar's test client cannot send a chunked body without Content-Length.
    from tests.integration.test_event_api import serve

    settings = Settings(run_workers=False, discovery=False, poll=False)
    with serve(db_url, settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            assert (await client.post("/fn/register", json=register_body())).status_code == 200
            assert (await client.post("/e/dev", json={"name": "bad/input"})).status_code == 200
            before = await fingerprint(db_url)
            for path, limit in BODY_LIMITS.items():
                body = _chunks(limit) if streamed else b" " * (limit + 1)
                response = await asyncio.to_thread(httpx.post, url + path, content=body, timeout=60)
                sent = response.request.headers
                assert ("content-length" in sent) is not streamed, (path, sent)
                assert response.status_code == 413, (path, response.text)
                answer = response.json()
                assert answer["status"] == 413, answer
                assert answer["error"] == f"request body is over the max size of {limit} bytes"
                if path.startswith("/e/"):
                    assert answer["ids"] == []  # the event API's failure shape
            assert await fingerprint(db_url) == before
