"""Schemathesis against the served OpenAPI document: the event and REST routes, in-process.

The document at ``/openapi/openapi.json`` is loaded from the ASGI app itself, and Hypothesis
generates requests from it — valid ones and, in a second pass, ones that break the schema —
for the event API (``/e``, ``/invoke``), REST v1 and the SDK's ``/v0/runs`` routes.  Every answer
must be no 5xx, carry a documented status code, and match the documented response schema.
The raw ``/e/{key}`` body is not described by the document (the handler reads it itself), so a
Hypothesis test of its own posts arbitrary JSON there.  Bounded: a few dozen examples each.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from litestar import Litestar
from litestar.testing import AsyncTestClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.settings import Settings

OPENAPI_PATH = "/openapi/openapi.json"
#: Event and REST routes; GraphQL is fuzzed by its own shape tests, ``/fn/register`` by its own.
ROUTES = r"^/(e(/\{key\})?|invoke/.*|v1/.*|v0/runs/.*)$"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=20,  # per operation and generation mode: ~16 operations, a few seconds each
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def settings_for_tests() -> Settings:
    return Settings(run_workers=False, discovery=False, poll=False)


@pytest.fixture
def api(db_url: str) -> Iterator[Any]:
    app = create_app(settings_for_tests(), db_url)
    try:
        schema = schemathesis.openapi.from_asgi(OPENAPI_PATH, app)
        yield schema.include(path_regex=ROUTES)
    finally:
        # Schemathesis keeps the app's lifespan running for the process; close the pool now,
        # before the test database is dropped.
        asgi.shutdown_lifespans()


def test_the_openapi_document_describes_the_event_and_rest_routes(api: Any) -> None:
    paths = {op.ok().path for op in api.get_all_operations()}
    assert {"/e/{key}", "/v1/runs/{run_id}", "/v1/events", "/v1/cancellations"} <= paths


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_get_no_5xx_and_documented_answers(
    api: Any, mode: GenerationMode
) -> None:
    failures: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:
            # A plain string parameter has no invalid values: nothing negative to send.
            assert mode is GenerationMode.NEGATIVE, operation.path
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


# ``/e/{key}``: arbitrary JSON bodies (the document cannot generate them).

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {"name": st.text(max_size=10) | json_values},
    optional={
        "data": json_values,
        "user": json_values,
        "id": json_values,
        "ts": json_values,
        "v": json_values,
    },
)
bodies = json_values | event_like | st.lists(event_like, max_size=4)


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings_for_tests(), db_url)) as c:
        yield c


async def test_arbitrary_json_sent_as_events_is_stored_or_refused_never_a_5xx(
    client: AsyncTestClient[Litestar],
) -> None:
    seen: list[tuple[Any, int, Any]] = []

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(body=bodies)
    def collect(body: Any) -> None:
        seen.append((body, 0, None))

    collect()  # Hypothesis drives sync functions; the requests are sent below, in the loop
    for i, (body, _, _) in enumerate(seen):
        response = await client.post("/e/key", content=json.dumps(body).encode())
        answer = response.json()
        assert response.status_code in (200, 400), (body, response.text)
        if response.status_code == 200:
            assert answer["status"] == 200 and isinstance(answer["ids"], list), answer
        else:
            # As upstream: the events before the bad one are stored and listed.
            stored_before = len(body) - 1 if isinstance(body, list) else 0
            assert answer["status"] == 400 and answer["error"], answer
            assert len(answer["ids"]) <= max(stored_before, 0), (body, answer)
        seen[i] = (body, response.status_code, answer)
