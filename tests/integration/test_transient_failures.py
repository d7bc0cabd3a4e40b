"""Transient database failures, caused for real, answer 503 with ``Retry-After``, never 500.

No mocks: a pool whose only connection the test holds (``PoolTimeout``), a table lock that
outlasts the read statement timeout (``QueryCanceled``), ``pg_terminate_backend`` on the
server's backend while a request waits on a lock (the connection is lost mid-request), and
triggers created in the test database only that end their own backend during an insert or at
COMMIT (a write whose outcome the server cannot know).  Each answer must be the error envelope
with a ``code`` and a small ``Retry-After``, change nothing, be logged as one warning line
without a traceback, and be followed by a server that works again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.main import Services, create_app
from app.settings import Settings
from domain.event_ids import parse_seed, seeded_event_id
from tests.integration.test_bad_input import fingerprint, register_body

Client = AsyncTestClient[Litestar]
SEED = "1743130137367,eii2YKXRVTJPuA=="
SEED_HEADERS = {"x-inngest-event-id-seed": SEED}
EVENTS = [{"name": "bad/input", "data": {"i": 1}}, {"name": "bad/input", "data": {"i": 2}}]


def _seeded_ids() -> list[str]:
    seed = parse_seed(SEED)
    assert seed is not None
    return [seeded_event_id(seed, i) for i in (1, 2)]


#: The ids a seeded send of ``EVENTS`` gets, whichever attempt stores them.
SEEDED_IDS = _seeded_ids()

KILL_DURING_INSERT = """
CREATE FUNCTION test_die() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
CREATE TRIGGER test_die BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION test_die();
"""
# A deferred constraint trigger runs when the transaction commits: the COMMIT itself fails.
KILL_AT_COMMIT = """
CREATE FUNCTION test_die() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER test_die AFTER INSERT ON events
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_die();
"""
REMOVE_KILLER = "DROP TRIGGER test_die ON events; DROP FUNCTION test_die();"


def _app(db_url: str, **settings: Any) -> Litestar:
    return create_app(Settings(run_workers=False, discovery=False, poll=False, **settings), db_url)


@asynccontextmanager
async def serving(db_url: str, **settings: Any) -> AsyncIterator[Client]:
    """A dev server with one registered function (``seed-fn``) and one stored event."""
    async with AsyncTestClient(app=_app(db_url, **settings)) as client:
        assert (await client.post("/fn/register", json=register_body())).status_code == 200
        assert (await client.post("/e/k", json=EVENTS[0])).status_code == 200
        yield client


def services_of(client: Client) -> Services:
    services: Services = client.app.state.services
    return services


def assert_unavailable(response: Any, code: str, retry_after: int) -> dict[str, Any]:
    """A 503 envelope with ``code`` and a ``Retry-After`` of ``retry_after`` seconds."""
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(retry_after)
    body: dict[str, Any] = response.json()
    assert body["status"] == 503 and body["code"] == code and body["data"] is None, body
    assert f"retry in {retry_after} s" in body["error"], body
    return body


class Records(logging.Handler):
    """What the error mapper logs (attached to its logger directly: Litestar's logging setup
    replaces the root handlers, and with them pytest's ``caplog``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def assert_one_warning_each(self, requests: int = 1) -> None:
        """One WARNING line per failed request, no traceback, nothing logged as unhandled."""
        levels = [r.levelno for r in self.records]
        assert levels == [logging.WARNING] * requests, [r.getMessage() for r in self.records]
        assert all(r.exc_info is None and "\n" not in r.getMessage() for r in self.records)


@pytest.fixture
def logged() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("app.http.errors")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@contextmanager
def locked(db_url: str, table: str) -> Iterator[psycopg.Connection[Any]]:
    """``table`` locked against reads and writes until the block ends."""
    with psycopg.connect(db_url) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield conn
        conn.rollback()


def terminate_backends_waiting_on_a_lock(db_url: str, timeout: float = 10) -> int:
    """Wait until a server backend blocks on a lock, then terminate every such backend."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as admin:
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0]:
                return int(row[0])
            time.sleep(0.02)
    raise AssertionError("no backend of the server ever waited on the lock")


async def test_a_busy_ingest_pool_answers_503_and_stores_nothing(
    db_url: str, logged: Records
) -> None:
    async with serving(db_url, ingest_connections=1, pool_wait_seconds=0.3) as client:
        before = await fingerprint(db_url)
        # Its only connection busy with a long statement, the pool has none for requests.
        async with services_of(client).ingest_db.connection() as held:
            sleeper = asyncio.create_task(held.execute("SELECT pg_sleep(0.5)"))
            sent = await client.post("/e/k", json=EVENTS, headers=SEED_HEADERS)
            invoked = await client.post("/invoke/seed-fn", json={"data": {}})
            await sleeper
        body = assert_unavailable(sent, "database_busy", 5)
        assert body["ids"] == [] and "nothing was done" in body["error"]
        assert_unavailable(invoked, "database_busy", 5)
        assert await fingerprint(db_url) == before
        logged.assert_one_warning_each(requests=2)
        retried = await client.post("/e/k", json=EVENTS, headers=SEED_HEADERS)
        assert retried.status_code == 200 and retried.json()["ids"] == SEEDED_IDS


async def test_a_busy_read_pool_answers_503(db_url: str) -> None:
    async with serving(db_url, read_connections=1, pool_wait_seconds=0.3) as client:
        async with services_of(client).read_db.connection():
            listed = await client.get("/v1/events")
            one = await client.get(f"/v1/events/{SEEDED_IDS[0]}/runs")
        assert_unavailable(listed, "database_busy", 5)
        assert_unavailable(one, "database_busy", 5)
        assert (await client.get("/v1/events")).status_code == 200


async def test_a_graphql_query_that_finds_the_read_pool_busy_answers_503(db_url: str) -> None:
    query = {"query": "{ apps { id name } }"}
    async with serving(db_url, read_connections=1, pool_wait_seconds=0.3) as client:
        async with services_of(client).read_db.connection():
            busy = await client.post("/v0/gql", json=query)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2", busy.text
        assert "couldn't get a connection" in busy.json()["errors"][0]["message"]
        assert (await client.post("/v0/gql", json=query)).status_code == 200


async def test_a_read_over_the_statement_timeout_answers_503(db_url: str, logged: Records) -> None:
    async with serving(db_url, read_timeout_seconds=0.3) as client:
        with locked(db_url, "events"):
            response = await client.get("/v1/events")
        assert_unavailable(response, "database_timeout", 5)
        logged.assert_one_warning_each()
        assert (await client.get("/v1/events")).status_code == 200


async def test_a_read_whose_connection_is_terminated_answers_503_and_the_next_one_works(
    db_url: str, logged: Records
) -> None:
    async with serving(db_url) as client:
        with locked(db_url, "events"):
            request = asyncio.create_task(client.get("/v1/events"))
            await asyncio.to_thread(terminate_backends_waiting_on_a_lock, db_url)
            response = await request
        assert_unavailable(response, "database_unavailable", 2)
        logged.assert_one_warning_each()
        # The pool discarded the dead connection; the retry gets a fresh one.
        assert (await client.get("/v1/events")).status_code == 200


async def test_an_event_write_whose_connection_is_terminated_is_503_and_a_retry_stores_it_once(
    db_url: str,
) -> None:
    async with serving(db_url) as client:
        before = await fingerprint(db_url)
        with locked(db_url, "events"):
            request = asyncio.create_task(client.post("/e/k", json=EVENTS, headers=SEED_HEADERS))
            await asyncio.to_thread(terminate_backends_waiting_on_a_lock, db_url)
            response = await request
        body = assert_unavailable(response, "database_unavailable", 2)
        assert body["ids"] == [] and "x-inngest-event-id-seed" in body["error"]
        assert await fingerprint(db_url) == before
        for _ in range(2):
            retried = await client.post("/e/k", json=EVENTS, headers=SEED_HEADERS)
            assert retried.status_code == 200 and retried.json()["ids"] == SEEDED_IDS
        assert await _stored(db_url, SEEDED_IDS) == 2


@pytest.mark.parametrize("killer", [KILL_DURING_INSERT, KILL_AT_COMMIT], ids=["insert", "commit"])
async def test_an_event_write_cut_off_by_the_database_answers_503_and_a_seeded_retry_is_safe(
    db_url: str, logged: Records, killer: str
) -> None:
    async with serving(db_url) as client:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(killer)
        before = await fingerprint(db_url)
        sent = await client.post("/e/k", json=EVENTS, headers=SEED_HEADERS)
        invoked = await client.post("/invoke/seed-fn", json={"data": {}}, headers=SEED_HEADERS)
        body = assert_unavailable(sent, "database_unavailable", 2)
        assert body["ids"] == []
        assert "may or may not" in body["error"], body
        assert "same x-inngest-event-id-seed header is safe" in body["error"], body
        invoke_body = assert_unavailable(invoked, "database_unavailable", 2)
        assert "invoke the function twice" in invoke_body["error"], invoke_body
        assert await fingerprint(db_url) == before
        logged.assert_one_warning_each(requests=2)
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(REMOVE_KILLER)
        # The SDKs retry a 5xx with the same seed header: the same ids, each event stored once.
        for _ in range(2):
            retried = await client.post("/e/k", json=EVENTS, headers=SEED_HEADERS)
            assert retried.status_code == 200 and retried.json()["ids"] == SEEDED_IDS
        assert await _stored(db_url, SEEDED_IDS) == 2


async def test_pooled_connections_terminated_while_idle_are_replaced_without_an_error(
    db_url: str,
) -> None:
    async with serving(db_url) as client:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        assert (await client.get("/v1/events")).status_code == 200
        sent = await client.post("/e/k", json=EVENTS, headers=SEED_HEADERS)
        assert sent.status_code == 200 and sent.json()["ids"] == SEEDED_IDS


async def _stored(db_url: str, ids: list[str]) -> int:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM events WHERE internal_id = ANY(%s)", (ids,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])
