"""A fake SDK app whose functions misbehave on purpose, served in a thread on 127.0.0.1.

Each function is named after its misbehaviour (``BEHAVIOURS``); the function id is
``bad-sdk-<behaviour>`` and its trigger ``bad/<behaviour>``.  Every call is recorded (run id,
``ctx.attempt``, arrival time) so tests can count the attempts the server made.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

APP = "bad-sdk"
SDK = {"X-Inngest-SDK": "fake:v0.0.1", "X-Inngest-Req-Version": "1"}
NINE_MIB = 9 * 1024 * 1024

#: behaviour -> (status, headers, body); None means the handler does something special.
CANNED: dict[str, tuple[int, dict[str, str], bytes]] = {
    "always-500": (500, SDK, b'{"name":"Error","message":"always-500: the function raised"}'),
    "no-retry-500": (
        500,
        {**SDK, "X-Inngest-No-Retry": "true"},
        b'{"name":"NonRetriableError","message":"no-retry-500: give up now"}',
    ),
    "bare-500": (500, {}, b"upstream proxy exploded"),
    "garbage-206": (206, SDK, b"<html>definitely not JSON</html>"),
    "not-sdk-200": (200, {}, b'{"hello": "I am a plain web server"}'),
    "unknown-opcode": (206, SDK, b'[{"id": "abc", "op": "Teleport", "name": "beam me up"}]'),
    "huge-response": (200, SDK, b'"' + b"x" * NINE_MIB + b'"'),
    "bad-sleep": (206, SDK, b'[{"id": "s1", "op": "Sleep", "name": "a fortnight-ish"}]'),
}
BEHAVIOURS = (*CANNED, "hang", "close-mid-response")


@dataclass
class Call:
    run_id: str
    attempt: int
    at: float


@dataclass
class BadSdk:
    url: str
    calls: dict[str, list[Call]] = field(default_factory=lambda: collections.defaultdict(list))
    release: threading.Event = field(default_factory=threading.Event)

    def function(self, behaviour: str, retries: int) -> dict[str, Any]:
        slug = f"{APP}-{behaviour}"
        return {
            "id": slug,
            "name": behaviour,
            "triggers": [{"event": f"bad/{behaviour}"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": f"{self.url}?fnId={slug}&stepId=step"},
                    "retries": {"attempts": retries},
                }
            },
        }

    def register_body(self, retries: int) -> dict[str, Any]:
        return {
            "appName": APP,
            "url": self.url,
            "sdk": "fake:v0.0.1",
            "framework": "http.server",
            "v": "0.1",
            "functions": [self.function(b, retries) for b in BEHAVIOURS],
        }


def _handler(sdk: BadSdk) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

        def do_PUT(self) -> None:  # a sync request: we register through /fn/register instead
            self._reply(200, SDK, b"{}")

        def do_POST(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            behaviour = query.get("fnId", [""])[0].removeprefix(f"{APP}-")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            ctx = body.get("ctx", {})
            sdk.calls[str(ctx.get("run_id"))].append(
                Call(str(ctx.get("run_id")), int(ctx.get("attempt", -1)), time.monotonic())
            )
            if behaviour == "hang":
                sdk.release.wait(60)  # far past the server's call timeout
                return
            if behaviour == "close-mid-response":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n")
                self.wfile.write(b'X-Inngest-SDK: fake\r\n\r\n{"partial')
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            status, headers, payload = CANNED[behaviour]
            self._reply(status, headers, payload)

        def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def serve_bad_sdk() -> Iterator[BadSdk]:
    """Serve the fake app on a free 127.0.0.1 port until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(BadSdk(url="")))
    server.daemon_threads = True
    sdk = BadSdk(url=f"http://127.0.0.1:{server.server_address[1]}/api/inngest")
    server.RequestHandlerClass = _handler(sdk)
    thread = threading.Thread(target=server.serve_forever, name="bad-sdk", daemon=True)
    thread.start()
    try:
        yield sdk
    finally:
        sdk.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
