"""Self-hosted mode (``stepwell start``): signed calls, Bearer-authenticated APIs, event keys.

The Python SDK runs in cloud mode with the same signing key: it verifies every request we
send it and signs its own calls to us, so the core scenarios passing proves both directions.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import psycopg
import pytest

from app.drivers.signing import hashed_signing_key
from tests.conftest import cloned_database, count_rows
from tests.e2e.client import Stepwell
from tests.e2e.conftest import EVENT_KEY, PY_APP, SIGNING_KEY, Stack, start_server
from tests.processes import clean_env, free_port, spawn

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def signed(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, str]]:
    logs = tmp_path_factory.mktemp("signed")
    server_port, app_port = free_port(), free_port()
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    server_url = f"http://127.0.0.1:{server_port}"
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        app = ex.enter_context(
            spawn(
                [sys.executable, str(PY_APP), "--port", str(app_port)],
                port=app_port,
                health="/healthz",
                log=logs / "py_app.log",
                env=clean_env(
                    STEPWELL_URL=server_url,
                    STEPWELL_MODE="cloud",
                    STEPWELL_E2E_LOG=str(logs / "steps.jsonl"),
                    INNGEST_SIGNING_KEY=SIGNING_KEY,
                    INNGEST_EVENT_KEY=EVENT_KEY,
                ),
            )
        )
        server = start_server(
            ex,
            db,
            logs,
            "--signing-key",
            SIGNING_KEY,
            "--event-key",
            EVENT_KEY,
            "-u",
            app_url,
            mode="start",
            port=server_port,
        )
        client = Stepwell(
            server.url, event_key=EVENT_KEY, signing_key_hash=hashed_signing_key(SIGNING_KEY)
        )
        ex.callback(client.close)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if "e2e-py-sequential" in client.functions("e2e-py"):
                    break
            except httpx.HTTPStatusError:
                pass
            time.sleep(0.2)
        yield Stack(server, app, client, logs / "steps.jsonl", app_url), db


def test_steps_retries_sleeps_waits_and_invokes_work_signed(
    signed: tuple[Stack, str],
) -> None:
    sw = signed[0].client
    run = sw.run_of(sw.send("e2e/sequential", {"base": 1}), "e2e-py-sequential")
    assert run["status"] == "Completed" and run["output"]["sum"] == 2 + 3 + 30
    flaky = sw.run_of(sw.send("e2e/flaky"), "e2e-py-flaky")
    assert flaky["output"] == {"ok": True, "attempt": 1}
    slept = sw.run_of(sw.send("e2e/sleep", {"seconds": 1}), "e2e-py-sleeper")
    assert slept["status"] == "Completed"
    invoked = sw.run_of(sw.send("e2e/invoke", {"n": 5}), "e2e-py-invoker")
    assert invoked["output"] == {"result": {"doubled": 10}}
    key = uuid.uuid4().hex
    waiting = sw.send("e2e/wait", {"id": key, "timeout": 20})
    [wait_run] = sw.wait_for_runs(waiting)
    sw.wait_run(wait_run["run_id"], statuses={"Running"})
    time.sleep(1)
    sw.send("e2e/wait.reply", {"id": key})
    assert sw.wait_run(wait_run["run_id"])["output"]["matched"]["data"] == {"id": key}


def test_a_wrong_event_key_is_refused_and_stores_nothing(signed: tuple[Stack, str]) -> None:
    stack, db = signed
    before = count_rows(db, "events")
    response = httpx.post(f"{stack.server.url}/e/not-the-key", json={"name": "e2e/sequential"})
    assert response.status_code == 401
    assert response.json()["error"] == "Event key not found"
    assert count_rows(db, "events") == before


def test_api_calls_without_a_valid_bearer_are_refused_and_change_nothing(
    signed: tuple[Stack, str],
) -> None:
    stack, db = signed
    url = stack.server.url
    body = json.dumps(
        {
            "url": "http://127.0.0.1:9/x",
            "appName": "intruder",
            "v": "0.1",
            "sdk": "py:v0.5.19",
            "framework": "fast_api",
            "functions": [],
        }
    )
    for headers in ({}, {"Authorization": "Bearer " + "0" * 64}):
        register = httpx.post(
            f"{url}/fn/register",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )
        assert register.status_code == 401, register.text
        assert (
            httpx.get(f"{url}/v1/runs/01KBKA0ZM00000000000000000", headers=headers).status_code
            == 401
        )
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM apps WHERE name = 'intruder'").fetchone() == (0,)


def test_the_sdk_refuses_a_call_whose_signature_is_wrong(signed: tuple[Stack, str]) -> None:
    stack = signed[0]
    body = json.dumps({"event": {}, "events": [], "steps": {}, "ctx": {}, "use_api": False})
    forged = f"t={int(time.time())}&s={hashlib.sha256(b'forged').hexdigest()}"
    response = httpx.post(
        f"{stack.app_url}?fnId=e2e-py-sequential&stepId=step",
        content=body,
        headers={"X-Inngest-Signature": forged, "Content-Type": "application/json"},
    )
    assert response.status_code == 401


def test_the_openapi_document_needs_the_signing_key(signed: tuple[Stack, str]) -> None:
    url = signed[0].server.url
    for path in ("/openapi/openapi.json", "/openapi/swagger"):
        denied = httpx.get(f"{url}{path}")
        assert denied.status_code == 401, (path, denied.text)
        assert denied.json() == {"error": "unauthorized", "status": 401, "data": None}
    bearer = {"Authorization": f"Bearer {hashed_signing_key(SIGNING_KEY)}"}
    allowed = httpx.get(f"{url}/openapi/openapi.json", headers=bearer)
    assert allowed.status_code == 200
    assert "/v1/runs/{run_id}" in allowed.json()["paths"]
