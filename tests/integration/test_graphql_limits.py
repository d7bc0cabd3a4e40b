"""``/v0/gql`` under hostile or heavy documents, on a real server (uvicorn) and PostgreSQL.

What a client sees: documents over a limit (bytes, tokens, aliases, depth, estimated cost) are
refused with a 400 and a coded GraphQL error before anything runs, while documents just under
the limits (GraphiQL's introspection among them) run; a request reads through one connection
and gives it back however it ends; a costly CEL ``query`` filter ends in a bounded error; and
all the while ``POST /e`` keeps answering.  Timing bounds are deliberately generous (the test
machine is shared and noisy): they separate "seconds" from "blocked", nothing finer.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from graphql import get_introspection_query, parse

from app.graphql import PATH, build_schema
from app.graphql.guard import measure
from app.graphql.limits import (
    CEL_SCAN_LIMIT,
    CEL_SECONDS,
    MAX_ALIASES,
    MAX_BODY_BYTES,
    MAX_COST,
    MAX_DEPTH,
    MAX_QUERY_BYTES,
    REQUEST_SECONDS,
)
from app.graphql.scope import RequestEnded, RequestScope
from app.main import Services
from app.store.events import insert_events, received
from domain.ids import new_ulid
from tests.integration.test_graphql import (
    FROM,
    T0,
    Runs,
    completed_history,
    data,
    gql,
    seed_app,
)
from tests.integration.test_sync import stepwell
from tests.processes import free_port

RUNS_PAGE = """{alias}: runs(first: {first}, filter: {{from: "{since}"}}, orderBy: []) {{
  totalCount edges {{ cursor node {{ id status queuedAt startedAt endedAt output eventName
  triggerIDs }} }} }}"""
BOMB_FIELD = 'a{i}:runs(filter:{{from:"{since}"}},orderBy:[]){{totalCount edges{{node{{id}}}}}}'


@dataclass
class Server:
    http: httpx.AsyncClient
    url: str
    services: Services


@contextlib.asynccontextmanager
async def served(db_url: str) -> AsyncIterator[Server]:
    """The app under uvicorn on this event loop, and a client speaking real HTTP to it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with stepwell(db_url, port) as services, httpx.AsyncClient(
        base_url=url, timeout=60
    ) as http:
        yield Server(http=http, url=url, services=services)


@pytest.fixture
async def srv(db_url: str) -> AsyncIterator[Server]:
    async with served(db_url) as found:
        yield found


async def refused(srv: Server, query: str, status: int = 400) -> tuple[str, str]:
    """POST ``query``; assert it was refused in GraphQL's shape, return (code, message)."""
    started = time.monotonic()
    response = await srv.http.post(PATH, json={"query": query})
    assert time.monotonic() - started < 5, "a refusal must be quick"
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["data"] is None and len(body["errors"]) == 1, body
    [found] = body["errors"]
    return str(found["extensions"]["code"]), str(found["message"])


def read_requests(srv: Server) -> int:
    return int(srv.services.read_db.get_stats().get("requests_num", 0))


def checked_out(srv: Server) -> int:
    stats = srv.services.read_db.get_stats()
    return int(stats.get("pool_size", 0) - stats.get("pool_available", 0))


def idle_in_transaction(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND state LIKE 'idle in transaction%%'"
        ).fetchone()
    return int(row[0]) if row else 0


async def eventually(probe: Callable[[], bool], what: str) -> None:
    # Connections come back asynchronously once a request has ended (a disconnect is noticed
    # by the server a moment after the client leaves).
    deadline = time.monotonic() + 10
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def ingest_latencies(srv: Server, during: Awaitable[Any]) -> tuple[Any, list[float]]:
    """Send events to ``POST /e`` back to back while ``during`` runs; its result and latencies."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def ping() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            response = await srv.http.post("/e/key", json={"name": "load/ping", "data": {}})
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text

    pinger = asyncio.create_task(ping())
    try:
        result = await during
    finally:
        stop.set()
        await pinger
    assert latencies, "no event was sent while the requests ran"
    return result, latencies


def p99(latencies: list[float]) -> float:
    if len(latencies) < 2:
        return max(latencies)
    return statistics.quantiles(latencies, n=100, method="inclusive")[98]


def heavy_document(aliases: int) -> str:
    pages = [RUNS_PAGE.format(alias=f"p{i}", first=399, since=FROM) for i in range(aliases)]
    return "{ " + "\n".join(pages) + " }"


def cost(query: str) -> int:
    return measure(build_schema()._schema, parse(query)).cost


# --- documents refused before they run ---


async def test_an_alias_bomb_is_refused_with_a_400_before_any_read(srv: Server) -> None:
    before = read_requests(srv)
    thousands = "{" + " ".join(BOMB_FIELD.format(i=i, since=FROM) for i in range(3000)) + "}"
    code, message = await refused(srv, thousands)
    assert code == "QUERY_TOO_LARGE" and str(MAX_QUERY_BYTES) in message
    over_aliases = "{" + " ".join(BOMB_FIELD.format(i=i, since=FROM) for i in range(150)) + "}"
    code, message = await refused(srv, over_aliases)
    assert code == "TOO_MANY_ALIASES" and "150 aliases" in message
    # Under the alias limit, the same fields are still far too much work.
    costly = "{" + " ".join(BOMB_FIELD.format(i=i, since=FROM) for i in range(90)) + "}"
    code, message = await refused(srv, costly)
    assert code == "QUERY_TOO_COMPLEX" and "totalCount" in message
    assert read_requests(srv) == before, "a refused document must not touch the database"


async def test_fragment_spreads_are_counted_at_every_spread(srv: Server) -> None:
    field = BOMB_FIELD.format(i=0, since=FROM)
    spread = "{" + " ...F" * 1000 + "} fragment F on Query { " + field + " }"
    code, message = await refused(srv, spread)
    assert code == "TOO_MANY_ALIASES" and "1000 aliases" in message
    unaliased = field.partition(":")[2]
    spread = "{" + " ...F" * 1000 + "} fragment F on Query { " + unaliased + " }"
    assert (await refused(srv, spread))[0] == "QUERY_TOO_COMPLEX"
    inline = "{" + (" ... on Query { " + unaliased + " }") * 60 + "}"
    assert (await refused(srv, inline))[0] == "QUERY_TOO_COMPLEX"
    # Each level doubles the previous: 2^40 fields if expanded, measured in linear time.
    nested = "".join(f" fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 41))
    doubling = "{ ...F40 } fragment F0 on Query { __typename }" + nested
    assert (await refused(srv, doubling))[0] == "QUERY_TOO_COMPLEX"


async def test_deep_and_oversized_documents_are_refused(srv: Server) -> None:
    nested = "childrenSpans { " * (MAX_DEPTH) + "name" + " }" * MAX_DEPTH
    deep = f'{{ run(runID: "x") {{ trace {{ {nested} }} }} }}'
    code, message = await refused(srv, deep)
    assert code == "QUERY_TOO_DEEP" and str(MAX_DEPTH) in message
    very_deep = "{" + "a {" * 1000 + "b" + "}" * 1001
    assert (await refused(srv, very_deep))[0] == "QUERY_TOO_DEEP"
    padded = "{ apps { id } }" + " " * (1024 * 1024)
    code, message = await refused(srv, padded)
    assert code == "QUERY_TOO_LARGE" and str(MAX_QUERY_BYTES) in message
    eight_mb = "{ apps { id } }" + "#" * (8 * 1024 * 1024)
    code, message = await refused(srv, eight_mb, status=413)
    assert code == "REQUEST_TOO_LARGE" and str(MAX_BODY_BYTES) in message


# --- documents just under the limits run ---


async def test_documents_just_under_the_limits_run(srv: Server) -> None:
    functions = await seed_app(srv.http)
    runs = Runs(srv.http, functions, srv.services)
    run_id = await runs.run("shop-checkout", *completed_history())
    introspection = await data(srv.http, get_introspection_query(descriptions=True))
    assert introspection["__schema"]["queryType"]["name"] == "Query"
    aliased = "{" + " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES)) + "}"
    assert len(await data(srv.http, aliased)) == MAX_ALIASES
    nested = "childrenSpans { " * (MAX_DEPTH - 3) + "name" + " }" * (MAX_DEPTH - 3)
    deep = f"query($id: String!) {{ run(runID: $id) {{ trace {{ {nested} }} }} }}"
    assert (await data(srv.http, deep, id=run_id))["run"]["trace"]["childrenSpans"]
    heavy = heavy_document(10)
    assert 0.9 * MAX_COST < cost(heavy) <= MAX_COST
    pages = await data(srv.http, heavy)
    assert [p["totalCount"] for p in pages.values()] == [1] * 10
    assert cost(heavy_document(11)) > MAX_COST
    assert (await refused(srv, heavy_document(11)))[0] == "QUERY_TOO_COMPLEX"


# --- connections scoped to the request ---

HOSTILE = "event.data.items.exists(x, event.data.items.exists(y, x == y + 1000000))"
FILTERED = (
    'query($q: String!) { runs(first: 10, filter: {from: "' + FROM + '", query: $q},'
    " orderBy: []) { edges { node { id } } } }"
)


async def seed_runs(srv: Server, count: int, **data: Any) -> list[str]:
    runs = Runs(srv.http, await seed_app(srv.http), srv.services)
    return [
        await runs.run("shop-checkout", *completed_history(T0 + i * 1000), at=T0 + i * 1000, **data)
        for i in range(count)
    ]


async def test_a_request_reads_through_one_connection_and_ingest_keeps_answering(
    srv: Server, db_url: str
) -> None:
    await seed_runs(srv, 30, items=list(range(60)))
    heavy = heavy_document(10)
    before = read_requests(srv)
    await data(srv.http, heavy)
    assert read_requests(srv) - before == 1, "20 fields, one connection"

    async def reads() -> None:
        for _ in range(2):
            body = await gql(srv.http, heavy)
            assert "errors" not in body, body["errors"]

    async def abandoned() -> None:
        # A slow request (a costly filter) whose client goes away mid-flight.
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as other:
            request = {"query": FILTERED, "variables": {"q": HOSTILE}}
            sent = asyncio.create_task(other.post(PATH, json=request))
            await asyncio.sleep(0.5)
            assert not sent.done()
            sent.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sent

    _, latencies = await ingest_latencies(
        srv, asyncio.gather(reads(), reads(), reads(), abandoned())
    )
    assert p99(latencies) < 1.0, sorted(latencies)[-5:]
    await eventually(lambda: checked_out(srv) == 0, "every read connection back in the pool")
    assert idle_in_transaction(db_url) == 0


async def test_a_hostile_query_filter_ends_in_a_bounded_error_while_ingest_answers(
    srv: Server,
) -> None:
    await seed_runs(srv, 12, items=list(range(100)))
    started = time.monotonic()
    body, latencies = await ingest_latencies(srv, gql(srv.http, FILTERED, q=HOSTILE))
    assert time.monotonic() - started < 8
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_BUDGET_EXCEEDED", error
    assert "one event" in error["message"] and "simplify the expression" in error["message"]
    assert p99(latencies) < 1.0, sorted(latencies)[-5:]
    await eventually(lambda: checked_out(srv) == 0, "every read connection back in the pool")


EVENTS = (
    'query($after: String, $q: String!) { eventsV2(first: 10, after: $after, filter: {from: "'
    + FROM
    + '", query: $q}) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }'
)


async def insert(srv: Server, count: int, **data: Any) -> list[str]:
    """``count`` events, oldest first (one millisecond apart), stored in one statement."""
    ids = [new_ulid(T0 + n) for n in range(count)]
    events = [(i, {"name": "scan/item", "data": {"n": n, **data}, "user": {}, "id": i,
                   "ts": T0 + n}) for n, i in enumerate(ids)]  # fmt: skip
    async with srv.services.db.connection() as conn, conn.transaction():
        await insert_events(conn, events, received(T0), T0, process=False)
    return ids


async def test_a_filter_too_slow_over_many_events_ends_at_the_time_budget(srv: Server) -> None:
    # Each evaluation fits its own cost budget (~60 ms); a page of them does not fit 2 s.
    await insert(srv, 200, items=list(range(60)))
    started = time.monotonic()
    body, latencies = await ingest_latencies(srv, gql(srv.http, EVENTS, after=None, q=HOSTILE))
    assert time.monotonic() - started < 8
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_BUDGET_EXCEEDED", error
    assert f"{CEL_SECONDS:g} s of evaluation" in error["message"]
    assert p99(latencies) < 1.0, sorted(latencies)[-5:]


async def test_a_filter_scan_stops_at_its_bound_with_a_cursor_to_continue(srv: Server) -> None:
    ids = await insert(srv, CEL_SCAN_LIMIT + 100)
    # Newest first: the one match (the oldest event) lies past the first scan's bound.
    first = (await data(srv.http, EVENTS, after=None, q="event.data.n == 0"))["eventsV2"]
    assert first["edges"] == [] and first["pageInfo"]["hasNextPage"] is True
    assert first["totalCount"] == 0, "counted within the same horizon as the page"
    after = first["pageInfo"]["endCursor"]
    second = (await data(srv.http, EVENTS, after=after, q="event.data.n == 0"))["eventsV2"]
    assert second["edges"] == [{"node": {"id": ids[0]}}]
    assert second["pageInfo"]["hasNextPage"] is False


async def test_closing_a_request_cancels_its_work_and_returns_its_connection(
    srv: Server, db_url: str
) -> None:
    # What the deadline, a failure or a disconnect all end in: the request's scope closing while
    # its work still holds the connection in a statement.
    scope = RequestScope(srv.services, seconds=REQUEST_SECONDS)

    async def stuck() -> None:
        async with scope.reads.connection() as conn:
            await conn.execute("SELECT pg_sleep(60)")

    async def waiting() -> None:
        async with scope.reads.connection() as conn:
            await conn.execute("SELECT 1")

    holder, queued = scope.spawn(stuck()), scope.spawn(waiting())
    await eventually(lambda: checked_out(srv) == 1, "the request's one connection")
    started = time.monotonic()
    await scope.close()
    assert time.monotonic() - started < 5
    assert holder.cancelled() and queued.done()
    assert checked_out(srv) == 0
    with psycopg.connect(db_url) as conn:
        sleeping = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%'"
            " AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert sleeping == (0,), "the statement was cancelled in the server too"
    with pytest.raises(RequestEnded):
        async with scope.reads.connection():
            pass
