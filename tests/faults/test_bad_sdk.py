"""Misbehaving SDK apps: retried by the rules, then failed with a message that says why.

A real Stepwell server (``--retry-interval 0.2``, ``--call-timeout 1``) calls a fake SDK app
(``apps/bad_sdk.py``) whose functions answer 500 (with and without ``X-Inngest-SDK``, with
``X-Inngest-No-Retry``), hang, close the connection mid-response, answer garbage, answer 200
without being an SDK, report an unknown opcode, answer more than 8 MiB, or ask for a sleep
that is no duration.  Each function allows 2 retries: a retryable failure is attempted exactly
3 times (``ctx.attempt`` 0, 1, 2, spaced by the retry interval), a final one once, and the run
ends Failed with the reason in its output (``GET /v1/runs/{id}``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_server
from tests.faults.apps.bad_sdk import APP, BadSdk, serve_bad_sdk
from tests.faults.invariants import check_history_invariants, runs_by_event, wait_until_final

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RETRIES = 2
RETRY_INTERVAL = 0.2
CALL_TIMEOUT = 1.0

#: behaviour -> (attempts the SDK must see, text the run's error message must contain)
EXPECTED = {
    "always-500": (RETRIES + 1, "always-500: the function raised"),
    "bare-500": (RETRIES + 1, "upstream proxy exploded"),
    "no-retry-500": (1, "no-retry-500: give up now"),
    "hang": (RETRIES + 1, "ReadTimeout"),
    "close-mid-response": (RETRIES + 1, "request to SDK failed"),
    "garbage-206": (RETRIES + 1, "not JSON"),
    "not-sdk-200": (RETRIES + 1, "not an Inngest SDK"),
    "unknown-opcode": (RETRIES + 1, "unknown opcode 'Teleport'"),
    "huge-response": (1, "larger than 8 MiB"),
    "bad-sleep": (1, "invalid Sleep op"),
}


@dataclass
class BadStack:
    sw: Stepwell
    sdk: BadSdk
    db_url: str


@pytest.fixture(scope="module")
def stack(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BadStack]:
    logs = tmp_path_factory.mktemp("bad-sdk")
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        sdk = ex.enter_context(serve_bad_sdk())
        server = start_server(
            ex,
            db,
            logs,
            "--retry-interval",
            str(RETRY_INTERVAL),
            "--call-timeout",
            str(CALL_TIMEOUT),
        )
        sw = Stepwell(server.url, app=APP)
        ex.callback(sw.close)
        registered = httpx.post(
            f"{server.url}/fn/register", json=sdk.register_body(RETRIES), timeout=30
        )
        assert registered.status_code == 200, registered.text
        yield BadStack(sw, sdk, db)


@pytest.mark.parametrize("behaviour", list(EXPECTED))
def test_a_misbehaving_sdk_is_retried_by_the_rules_then_the_run_fails_with_a_reason(
    stack: BadStack, behaviour: str
) -> None:
    attempts, reason = EXPECTED[behaviour]
    event = stack.sw.send(f"bad/{behaviour}")
    [run] = stack.sw.wait_for_runs(event)
    final = stack.sw.wait_run(str(run["run_id"]), timeout=30)
    assert final["status"] == "Failed", final
    error = final["output"]
    assert isinstance(error, dict) and reason in str(error.get("message")), error
    calls = stack.sdk.calls[str(run["run_id"])]
    assert [c.attempt for c in calls] == list(range(attempts)), calls
    spacing = RETRY_INTERVAL + (CALL_TIMEOUT if behaviour == "hang" else 0)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= spacing * 0.9 for gap in gaps), gaps


def test_after_every_failure_the_history_has_no_gaps_and_one_final_event_per_run(
    stack: BadStack,
) -> None:
    stack.sw.send("bad/always-500")  # at least one run, whatever ran before
    for event_runs in _wait_all(stack):
        assert event_runs
    history = check_history_invariants(stack.db_url)
    assert all(kinds[-1] == "RunFailed" for kinds in history.values()), history


def _wait_all(stack: BadStack) -> list[list[tuple[str, str]]]:
    """Each ``bad/*`` event's runs, once every run in the database has ended."""
    with httpx.Client(base_url=stack.sw.base_url) as http:
        listed = http.get("/v1/events", params={"limit": 100}).json()["data"]
    ids = [e["internal_id"] for e in listed if e["name"].startswith("bad/")]
    wait_until_final(stack.db_url, ids, timeout=30)
    return list(runs_by_event(stack.db_url, ids).values())
