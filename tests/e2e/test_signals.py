"""Signals with the official TypeScript SDK (npm ``inngest`` 4.x): ``step.waitForSignal``
resumed through ``POST /v1/signals`` and by another function's ``step.sendSignal``, its
timeout, and the conflict rule with ``onConflict: "fail"`` and ``"replace"``.

The Python SDK has no signal tools, so the app is ``apps/node_app/signals.mjs``.  Assertions
are on what a user sees: run status and output over the REST API, the step in GraphQL.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from app.drivers.signing import hashed_signing_key
from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import EVENT_KEY, SIGNING_KEY, start_server
from tests.processes import ROOT, clean_env, free_port, spawn

pytestmark = pytest.mark.e2e
NODE_APP = ROOT / "tests" / "e2e" / "apps" / "node_app"
APP = "e2e-signals"
WAITER, SENDER = f"{APP}-waiter", f"{APP}-sender"
TRACE = """query($id: String!) { runTrace(runID: $id) { childrenSpans {
  name status stepOp stepInfo { ... on WaitForSignalStepInfo { signal timedOut } } } } }"""


def _node() -> str:
    node_bin = shutil.which("node")
    if node_bin is None or not (NODE_APP / "node_modules" / "inngest").exists():
        pytest.skip(
            "Node.js or the Node SDK app's packages are not installed "
            "(scripts/test runs `npm ci` when npm is present)"
        )
    return node_bin


def _spawn_app(ex: ExitStack, node_bin: str, port: int, logs: Any, **env: str) -> None:
    ex.enter_context(
        spawn(
            [node_bin, str(NODE_APP / "signals.mjs"), "--port", str(port)],
            port=port,
            health="/healthz",
            log=logs / "signals_app.log",
            env=clean_env(**env),
        )
    )


@pytest.fixture(scope="module")
def node(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stepwell]:
    node_bin = _node()
    logs = tmp_path_factory.mktemp("signals")
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        server = start_server(ex, db, logs)
        port = free_port()
        _spawn_app(ex, node_bin, port, logs, STEPWELL_URL=server.url)
        client = Stepwell(server.url, app=APP)
        ex.callback(client.close)
        client.sync(f"http://127.0.0.1:{port}/api/inngest")
        yield client


def _signal() -> str:
    return f"e2e-{uuid.uuid4().hex}"


def _start_waiter(client: Stepwell, signal: str, **data: Any) -> str:
    [run] = client.wait_for_runs(client.send("e2e/signals.wait", {"signal": signal, **data}))
    return str(run["run_id"])


def _step(client: Stepwell, run_id: str) -> dict[str, Any] | None:
    response = client.http.post("/v0/gql", json={"query": TRACE, "variables": {"id": run_id}})
    response.raise_for_status()
    trace = (response.json().get("data") or {}).get("runTrace")
    spans = trace["childrenSpans"] if trace else []
    return dict(spans[0]) if spans else None


def _wait_until_waiting(client: Stepwell, run_id: str, timeout: float = 30) -> dict[str, Any]:
    """The run's waitForSignal step once the server shows it waiting."""
    deadline = time.monotonic() + timeout
    step = None
    while time.monotonic() < deadline:
        step = _step(client, run_id)
        if step is not None and step["status"] == "WAITING":
            return step
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never waited for its signal: {step}")


def _post_signal(client: Stepwell, signal: str, data: Any = None) -> httpx.Response:
    return client.http.post("/v1/signals", json={"signal": signal, "data": data})


def test_a_wait_is_resumed_through_the_rest_api(node: Stepwell) -> None:
    signal = _signal()
    run_id = _start_waiter(node, signal)
    step = _wait_until_waiting(node, run_id)
    assert step["stepOp"] == "WAIT_FOR_SIGNAL" and step["stepInfo"]["signal"] == signal

    sent = _post_signal(node, signal, {"approved": True})

    assert sent.status_code == 200, sent.text
    assert sent.json()["data"] == {"run_id": run_id}
    done = node.wait_run(run_id)
    assert done["status"] == "Completed"
    assert done["output"] == {"got": {"signal": signal, "data": {"approved": True}}}
    step = _step(node, run_id)
    assert step is not None and step["status"] == "COMPLETED"
    assert step["stepInfo"]["timedOut"] is False
    again = _post_signal(node, signal)  # the wait is over: nobody waits any more
    assert again.status_code == 404 and again.json()["error"] == "No signal found"


def test_a_wait_is_resumed_by_another_functions_send_signal(node: Stepwell) -> None:
    signal = _signal()
    waiting = _start_waiter(node, signal)
    _wait_until_waiting(node, waiting)

    sender = node.run_of(
        node.send("e2e/signals.send", {"signal": signal, "data": [1, "two"]}), SENDER
    )

    assert sender["status"] == "Completed" and sender["output"] == {"run_id": waiting}
    done = node.wait_run(waiting)
    assert done["output"] == {"got": {"signal": signal, "data": [1, "two"]}}


def test_send_signal_to_a_signal_nobody_waits_on_completes_without_a_run(
    node: Stepwell,
) -> None:
    sender = node.run_of(node.send("e2e/signals.send", {"signal": _signal()}), SENDER)
    assert sender["status"] == "Completed" and sender["output"] == {"run_id": None}


def test_a_wait_that_gets_no_signal_times_out_with_null(node: Stepwell) -> None:
    signal = _signal()
    run_id = _start_waiter(node, signal, timeout="1s")
    done = node.wait_run(run_id)
    assert done["status"] == "Completed" and done["output"] == {"got": None}
    step = _step(node, run_id)
    assert step is not None and step["stepInfo"]["timedOut"] is True
    assert _post_signal(node, signal).status_code == 404


def test_waiting_on_a_signal_already_waited_on_fails_the_run_by_default(
    node: Stepwell,
) -> None:
    signal = _signal()
    first = _start_waiter(node, signal)
    _wait_until_waiting(node, first)

    second = _start_waiter(node, signal, conflict="fail")

    failed = node.wait_run(second)
    assert failed["status"] == "Failed"
    assert "Signal conflict; signal wait already exists for another run" in json.dumps(failed)
    sent = _post_signal(node, signal, "for the first")
    assert sent.status_code == 200 and sent.json()["data"]["run_id"] == first
    done = node.wait_run(first)
    assert done["output"] == {"got": {"signal": signal, "data": "for the first"}}


def test_a_replacing_wait_takes_the_signal_and_the_replaced_one_times_out(
    node: Stepwell,
) -> None:
    signal = _signal()
    first = _start_waiter(node, signal, timeout="3s")
    _wait_until_waiting(node, first)

    second = _start_waiter(node, signal, conflict="replace")
    _wait_until_waiting(node, second)
    sent = _post_signal(node, signal, 42)

    assert sent.status_code == 200 and sent.json()["data"]["run_id"] == second
    assert node.wait_run(second)["output"] == {"got": {"signal": signal, "data": 42}}
    replaced = node.wait_run(first)
    assert replaced["status"] == "Completed" and replaced["output"] == {"got": None}


@pytest.fixture(scope="module")
def signed(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stepwell]:
    """Self-hosted: the SDK signs its ``/v1/signals`` call with the signing key."""
    node_bin = _node()
    logs = tmp_path_factory.mktemp("signals-signed")
    server_port, app_port = free_port(), free_port()
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        _spawn_app(
            ex,
            node_bin,
            app_port,
            logs,
            STEPWELL_URL=f"http://127.0.0.1:{server_port}",
            STEPWELL_MODE="cloud",
            INNGEST_SIGNING_KEY=SIGNING_KEY,
            INNGEST_EVENT_KEY=EVENT_KEY,
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
            server.url,
            event_key=EVENT_KEY,
            signing_key_hash=hashed_signing_key(SIGNING_KEY),
            app=APP,
        )
        ex.callback(client.close)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if SENDER in client.functions(APP):
                    break
            except httpx.HTTPStatusError:
                pass
            time.sleep(0.2)
        yield client


def test_self_hosted_send_signal_is_authenticated_with_the_signing_key(
    signed: Stepwell,
) -> None:
    signal = _signal()
    waiting = _start_waiter(signed, signal)
    _wait_until_waiting(signed, waiting)
    anonymous = httpx.post(f"{signed.base_url}/v1/signals", json={"signal": signal})
    assert anonymous.status_code == 401

    sender = signed.run_of(
        signed.send("e2e/signals.send", {"signal": signal, "data": "ok"}), SENDER
    )

    assert sender["status"] == "Completed" and sender["output"] == {"run_id": waiting}
    assert signed.wait_run(waiting)["output"] == {"got": {"signal": signal, "data": "ok"}}
