"""End-to-end stacks: a real Stepwell server process + a real SDK app process, over HTTP.

The dev stack is shared by the whole session (tests use distinct events and data); tests that
kill or reconfigure the server build their own.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.processes import ROOT, Proc, clean_env, free_port, spawn, stepwell_args

PY_APP = ROOT / "tests" / "e2e" / "apps" / "py_app.py"
NODE_APP = ROOT / "tests" / "e2e" / "apps" / "node_app"
SIGNING_KEY = "signkey-test-12345678"
EVENT_KEY = "e2e-event-key"


@dataclass
class Stack:
    server: Proc
    app: Proc
    client: Stepwell
    log: Path
    app_url: str


def start_server(
    ex: ExitStack,
    db_url: str,
    logs: Path,
    *extra: str,
    mode: str = "dev",
    name: str = "server",
    port: int | None = None,
) -> Proc:
    port = port or free_port()
    args = stepwell_args(
        mode,
        "--database-url",
        db_url,
        "--port",
        str(port),
        "--no-discovery",
        "--no-poll",
        "--retry-interval",
        "0.5",
        *extra,
    )
    return ex.enter_context(spawn(args, port=port, log=logs / f"{name}.log"))


def start_py_app(ex: ExitStack, server_url: str, logs: Path, **env: str) -> tuple[Proc, str]:
    port = free_port()
    proc = ex.enter_context(
        spawn(
            [sys.executable, str(PY_APP), "--port", str(port)],
            port=port,
            health="/healthz",
            log=logs / "py_app.log",
            env=clean_env(
                STEPWELL_URL=server_url, STEPWELL_E2E_LOG=str(logs / "steps.jsonl"), **env
            ),
        )
    )
    return proc, f"http://127.0.0.1:{port}/api/inngest"


@contextmanager
def dev_stack(db_url: str, logs: Path) -> Iterator[Stack]:
    with ExitStack() as ex:
        server = start_server(ex, db_url, logs)
        app, app_url = start_py_app(ex, server.url, logs)
        client = Stepwell(server.url)
        ex.callback(client.close)
        client.sync(app_url)
        yield Stack(server, app, client, logs / "steps.jsonl", app_url)


@pytest.fixture(scope="session")
def py_stack(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("py-stack")
    with cloned_database(pg_admin_url, template_db) as url, dev_stack(url, logs) as stack:
        yield stack


@pytest.fixture
def sw(py_stack: Stack) -> Stepwell:
    return py_stack.client


def require_node() -> str:
    """The ``node`` binary; skips the test when Node.js or the SDK app's packages are missing."""
    node = shutil.which("node")
    if node is None or not (NODE_APP / "node_modules" / "inngest").exists():
        pytest.skip(
            "Node.js or the Node SDK app's packages are not installed "
            "(scripts/test runs `npm ci` when npm is present)"
        )
    return node


def start_node_app(ex: ExitStack, script: str, server_url: str, logs: Path, **env: str) -> str:
    """Start ``tests/e2e/apps/node_app/<script>`` against ``server_url``; its serve URL."""
    node = require_node()
    port = free_port()
    ex.enter_context(
        spawn(
            [node, str(NODE_APP / script), "--port", str(port)],
            port=port,
            health="/healthz",
            log=logs / f"{Path(script).stem}.log",
            env=clean_env(
                STEPWELL_URL=server_url, STEPWELL_E2E_LOG=str(logs / "steps.jsonl"), **env
            ),
        )
    )
    return f"http://127.0.0.1:{port}/api/inngest"


@contextmanager
def node_stack(db_url: str, logs: Path, script: str, app: str) -> Iterator[Stepwell]:
    """A dev server on ``db_url`` and the Node app ``script`` (app id ``app``), synced."""
    with ExitStack() as ex:
        server = start_server(ex, db_url, logs)
        url = start_node_app(ex, script, server.url, logs)
        client = Stepwell(server.url, app=app)
        ex.callback(client.close)
        client.sync(url)
        yield client
