"""End-to-end stacks: a real Stepwell server process + a real SDK app process, over HTTP.

The dev stack is shared by the whole session (tests use distinct events and data); tests that
kill or reconfigure the server build their own.
"""

from __future__ import annotations

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
