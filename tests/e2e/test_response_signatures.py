"""Self-hosted mode believes an SDK reply only if it is signed with the signing key.

The official Python and Node SDKs, keyed like the server, sign every reply (Node inside its
streams too) and their runs complete; a stand-in app that answers with a wrong signature, or
unsigned while naming a release that signs, fails each attempt with
``InngestErrResponseSignature`` and is retried like any failure.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.drivers.signing import hashed_signing_key
from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import EVENT_KEY, PY_APP, SIGNING_KEY, start_server
from tests.processes import ROOT, Proc, clean_env, free_port, spawn

pytestmark = pytest.mark.e2e

NODE_APP = ROOT / "tests" / "e2e" / "apps" / "node_app" / "app.mjs"
FORGED_APP = ROOT / "tests" / "e2e" / "apps" / "forged_app.py"
FORGED_KEY = "signkey-test-deadbeef"
SIGNATURE_ERROR = "InngestErrResponseSignature"


@dataclass
class Apps:
    py: Stepwell
    node: Stepwell | None
    forged: Stepwell
    forged_app: Proc


def _node() -> str | None:
    node = shutil.which("node")
    return node if node and (NODE_APP.parent / "node_modules" / "inngest").exists() else None


def _needs_node(client: Stepwell | None) -> Stepwell:
    if client is None:
        pytest.skip("Node.js or the Node SDK app's packages are not installed (npm ci)")
    return client


def _sdk_apps(ex: ExitStack, server_url: str, logs: Path, **env: str) -> list[str]:
    """The Python and (if installed) Node apps in cloud mode with the server's keys: URLs."""
    keyed = {
        "STEPWELL_URL": server_url,
        "STEPWELL_MODE": "cloud",
        "INNGEST_SIGNING_KEY": SIGNING_KEY,
        "INNGEST_EVENT_KEY": EVENT_KEY,
        **env,
    }
    node, py_port, node_port = _node(), free_port(), free_port()
    started = [([sys.executable, str(PY_APP)], py_port, "py_app")]
    if node is not None:
        started.append(([node, str(NODE_APP)], node_port, "node_app"))
    for args, port, name in started:
        ex.enter_context(
            spawn(
                [*args, "--port", str(port)],
                port=port,
                health="/healthz",
                log=logs / f"{name}.log",
                env=clean_env(**keyed),
            )
        )
    return [f"http://127.0.0.1:{port}/api/inngest" for _, port, _ in started]


def _self_hosted(ex: ExitStack, db: str, logs: Path, port: int, app_urls: list[str]) -> str:
    urls = [arg for url in app_urls for arg in ("-u", url)]
    server = start_server(
        ex, db, logs, "--signing-key", SIGNING_KEY, "--event-key", EVENT_KEY, *urls,
        mode="start", port=port,
    )  # fmt: skip
    return server.url


def _client(ex: ExitStack, url: str, app: str) -> Stepwell:
    client = Stepwell(
        url, event_key=EVENT_KEY, signing_key_hash=hashed_signing_key(SIGNING_KEY), app=app
    )
    ex.callback(client.close)
    return client


def _sdk_clients(ex: ExitStack, url: str, synced: int) -> tuple[Stepwell, Stepwell | None]:
    py = _client(ex, url, "e2e-py")
    node = _client(ex, url, "e2e-node") if synced > 1 else None
    _wait_synced(py, "e2e-py", *(["e2e-node"] if node else []))
    return py, node


def _wait_synced(client: Stepwell, *apps: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if all(client.functions(app) for app in apps):
                return
        except httpx.HTTPStatusError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"apps {apps} did not sync")


def _register_forged(client: Stepwell, app_url: str) -> None:
    functions = [
        {
            "id": f"forged-{lie}",
            "name": lie,
            "triggers": [{"event": f"e2e/forged.{lie}"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": f"{app_url}?fnId=forged-{lie}&stepId=step"},
                    "retries": {"attempts": 2},
                }
            },
        }
        for lie in ("wrong-key", "unsigned", "old-sdk")
    ]
    body = {"appName": "forged", "url": app_url, "sdk": "py:v0.5.19", "v": "0.1"}
    response = client.http.post("/fn/register", json={**body, "functions": functions})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def apps(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Apps]:
    logs = tmp_path_factory.mktemp("signatures")
    server_port, forged_port = free_port(), free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        app_urls = _sdk_apps(ex, server_url, logs, STEPWELL_E2E_LOG=str(logs / "steps.jsonl"))
        forged = ex.enter_context(
            spawn(
                [sys.executable, str(FORGED_APP), "--port", str(forged_port)],
                port=forged_port,
                health="/healthz",
                log=logs / "forged_app.log",
                env=clean_env(FORGED_SIGNING_KEY=FORGED_KEY),
            )
        )
        _self_hosted(ex, db, logs, server_port, app_urls)
        py, node = _sdk_clients(ex, server_url, len(app_urls))
        forged_client = _client(ex, server_url, "forged")
        _register_forged(forged_client, f"{forged.url}/api/inngest")
        yield Apps(py, node, forged_client, forged)


def test_the_python_sdks_signed_replies_verify_and_its_runs_complete(apps: Apps) -> None:
    sw = apps.py
    run = sw.run_of(sw.send("e2e/sequential", {"base": 1}), "e2e-py-sequential")
    assert run["status"] == "Completed" and run["output"]["sum"] == 2 + 3 + 30
    # Its signed error replies are believed too, No-Retry included.
    flaky = sw.run_of(sw.send("e2e/flaky"), "e2e-py-flaky")
    assert flaky["output"] == {"ok": True, "attempt": 1}
    final = sw.run_of(sw.send("e2e/non-retriable"), "e2e-py-non-retriable")
    assert final["status"] == "Failed" and final["output"]["message"] == "nope"


def test_the_node_sdks_signed_replies_verify_and_its_runs_complete(apps: Apps) -> None:
    sw = _needs_node(apps.node)
    run = sw.run_of(sw.send("e2e/node.steps", {"base": 1}), "e2e-node-steps")
    assert run["status"] == "Completed" and run["output"] == {"a": 2, "b": 3, "c": 30, "sum": 35}
    flaky = sw.run_of(sw.send("e2e/node.flaky"), "e2e-node-flaky")
    assert flaky["status"] == "Completed"
    final = sw.run_of(sw.send("e2e/node.non-retriable"), "e2e-node-non-retriable")
    assert final["status"] == "Failed" and final["output"]["message"] == "nope"


def _calls(apps: Apps, fn_id: str) -> int:
    return int(httpx.get(f"{apps.forged_app.url}/calls").json().get(fn_id, 0))


@pytest.mark.parametrize(
    ("lie", "message"),
    [
        ("wrong-key", "the SDK response's signature does not verify with the signing key"),
        ("unsigned", "the SDK response is not signed, but inngest-js:v4.24.0 signs"),
    ],
)
def test_a_reply_that_does_not_verify_fails_every_attempt_and_is_not_used(
    apps: Apps, lie: str, message: str
) -> None:
    sw = apps.forged
    before = _calls(apps, f"forged-{lie}")
    run = sw.run_of(sw.send(f"e2e/forged.{lie}"), f"forged-{lie}")
    assert run["status"] == "Failed", run
    assert run["output"]["name"] == SIGNATURE_ERROR
    assert message in run["output"]["message"]
    assert "forged" not in json.dumps(run["output"])
    assert _calls(apps, f"forged-{lie}") - before == 3  # retries: 2, like any failed attempt


def test_an_unsigned_reply_from_a_release_that_never_signed_is_believed(apps: Apps) -> None:
    sw = apps.forged
    run = sw.run_of(sw.send("e2e/forged.old-sdk"), "forged-old-sdk")
    assert run["status"] == "Completed" and run["output"] == {"forged": True}


@pytest.fixture(scope="module")
def streaming(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stepwell, Stepwell | None]]:
    logs = tmp_path_factory.mktemp("signatures-streaming")
    server_port = free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        # Python reads "force"; Node 4.x reads a boolean (and still accepts "force").
        app_urls = _sdk_apps(ex, server_url, logs, INNGEST_STREAMING="force")
        _self_hosted(ex, db, logs, server_port, app_urls)
        yield _sdk_clients(ex, server_url, len(app_urls))


def test_streamed_replies_of_both_sdks_are_believed(
    streaming: tuple[Stepwell, Stepwell | None],
) -> None:
    # Node signs the reply it wraps in the stream; Python signs nothing it streams, which is
    # accepted as from a release that never signs streams.
    py, maybe_node = streaming
    run = py.run_of(py.send("e2e/sequential", {"base": 1}), "e2e-py-sequential")
    assert run["status"] == "Completed" and run["output"]["sum"] == 2 + 3 + 30
    node = _needs_node(maybe_node)
    run = node.run_of(node.send("e2e/node.steps", {"base": 1}), "e2e-node-steps")
    assert run["status"] == "Completed" and run["output"]["sum"] == 35
