"""Streaming SDK replies: the SDK answers 201 at once and streams the body.

Each official SDK is served in its streaming mode (Python ``streaming=FORCE``, TypeScript
``streaming: true``): the status comes first, keepalive spaces while the function runs, then
the wrapped reply (status, headers, body).  Runs must proceed exactly as with plain replies:
steps memoized, a failed attempt retried, the output recorded.  Each app is also reached
through an HTTP/1.0 relay that copies the SDK's headers (``Transfer-Encoding: chunked``
included) onto an unchunked body, as the Python SDK's own streaming tests do; Inngest's Go
client reads such a reply to EOF, and so must Stepwell.
"""

from __future__ import annotations

import http.server
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_server
from tests.processes import ROOT, Proc, clean_env, free_port, spawn

pytestmark = pytest.mark.e2e
APPS = ROOT / "tests" / "e2e" / "apps"
NODE_APP = APPS / "node_app"


@dataclass
class Relay:
    """An HTTP/1.0 hop in front of an SDK app; records what the app answered."""

    url: str
    statuses: list[int] = field(default_factory=list)
    first_chunks: list[bytes] = field(default_factory=list)


@contextmanager
def http10_relay(target: str) -> Iterator[Relay]:
    relay = Relay(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
            chunks: list[bytes] = []
            with httpx.stream(
                self.command, f"{target}{self.path}", content=body, headers=headers, timeout=60
            ) as resp:
                chunks.extend(resp.iter_raw())
            if self.command == "POST":
                relay.statuses.append(resp.status_code)
                relay.first_chunks.append(chunks[0] if chunks else b"")
            self.send_response(resp.status_code)
            for key, value in resp.headers.items():
                # An SDK call's reply keeps Transfer-Encoding (the point of the relay); the
                # sync's reply is read by this test's own client, which believes it.  The
                # connection closes after each reply: that is what frames a 1.0 body.
                if key.lower() == "connection" or (
                    key.lower() == "transfer-encoding" and self.command != "POST"
                ):
                    continue
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(b"".join(chunks))

        do_GET = do_POST = do_PUT = _forward

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    relay.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class StreamingStack:
    client: Stepwell
    app: Proc
    relay: Relay


def _app_command(kind: str, port: int) -> list[str]:
    if kind == "python":
        return [sys.executable, str(APPS / "streaming_py_app.py"), "--port", str(port)]
    node = shutil.which("node")
    if node is None or not (NODE_APP / "node_modules" / "inngest").exists():
        pytest.skip("Node.js or the Node SDK app's packages are not installed")
    return [node, str(NODE_APP / "streaming.mjs"), "--port", str(port)]


@pytest.fixture(scope="module", params=["python", "node"])
def stack(
    request: pytest.FixtureRequest,
    pg_admin_url: str,
    template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StreamingStack]:
    kind = str(request.param)
    logs: Path = tmp_path_factory.mktemp(f"stream-{kind}")
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        server = start_server(ex, db, logs)
        port = free_port()
        app = ex.enter_context(
            spawn(
                _app_command(kind, port),
                port=port,
                health="/healthz",
                log=logs / "app.log",
                env=clean_env(STEPWELL_URL=server.url),
            )
        )
        relay = ex.enter_context(http10_relay(f"http://127.0.0.1:{port}"))
        client = Stepwell(server.url, app=f"e2e-stream-{'py' if kind == 'python' else 'node'}")
        ex.callback(client.close)
        yield StreamingStack(client, app, relay)


def _event(stack: StreamingStack) -> str:
    return "e2e/stream.py" if stack.client.app == "e2e-stream-py" else "e2e/stream.node"


def _run_and_check(stack: StreamingStack) -> None:
    sw = stack.client
    event_id = sw.send(_event(stack), {"seconds": 3.5})
    run = sw.run_of(event_id, f"{sw.app}-slow-steps", timeout=60)
    assert run["status"] == "Completed", run
    assert run["output"] == {"a": 1, "b": 1}


def test_a_streamed_run_proceeds_as_a_plain_one(stack: StreamingStack) -> None:
    stack.client.sync(f"{stack.app.url}/api/inngest")
    _run_and_check(stack)


def test_a_streamed_reply_through_an_http10_hop_is_read_to_eof(stack: StreamingStack) -> None:
    stack.client.sync(f"{stack.relay.url}/api/inngest")
    _run_and_check(stack)
    # The SDK really streamed: every call was answered 201, and the slow step's reply
    # began with keepalive whitespace before the wrapped response.
    assert stack.relay.statuses and set(stack.relay.statuses) == {201}
    assert any(chunk[:1] in (b" ", b"\n") for chunk in stack.relay.first_chunks), (
        stack.relay.first_chunks
    )
