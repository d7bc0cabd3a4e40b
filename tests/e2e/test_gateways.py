"""``step.fetch`` and ``step.ai.infer``: the server makes the request, the SDK gets the memo.

Each test talks to a stub started here (a threaded ``http.server`` on a free port) that plays
the AI provider or the fetched site and records every request it gets, so the tests can check
what the server sent (URL, auth, body), how often (once per attempt), and what the run saw.
The apps are the official SDKs: ``apps/gateway_py_app.py`` (Python, ``step.ai.infer``) and
``apps/node_app/gateway.mjs`` (TypeScript, both).
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.processes import ROOT, Proc, clean_env, free_port, spawn, stepwell_args

pytestmark = pytest.mark.e2e
APPS = ROOT / "tests" / "e2e" / "apps"
KEY = f"sk-stepwell-test-{uuid.uuid4().hex}"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Stub:
    """A provider and a web site in one.  The prompt (or fetch path) picks the behaviour:
    ``flaky`` answers 503 to the first request of its token, ``reject`` answers 400."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.answer(self)

            def do_POST(self) -> None:
                stub.answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, token: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if token.encode() in s.body or token in s.path]

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        parts = urlsplit(h.path)
        seen = Seen(
            h.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in h.headers.items()},
            h.rfile.read(length),
        )
        text = seen.body.decode(errors="replace") + h.path
        with self.lock:
            self.seen.append(seen)
            earlier = sum(1 for s in self.seen if s.body == seen.body and s.path == seen.path)
        if "flaky" in text and earlier == 1:
            return self.send(h, 503, {"error": {"message": "overloaded"}})
        if "reject" in text:
            return self.send(h, 400, {"error": {"message": "bad request", "type": "invalid"}})
        if parts.path.startswith("/site/"):
            return self.send(h, 201, f"{h.command} {parts.path} {seen.body.decode()}", "x-stub")
        return self.send(h, 200, self.completion(parts.path, seen.json()))

    @staticmethod
    def completion(path: str, body: Any) -> Any:
        said = json.dumps(body)  # echoed, so a test can tell runs apart
        if path.endswith("/messages"):
            return {"type": "message", "content": [{"type": "text", "text": said}]}
        if path.endswith(":generateContent"):
            return {"candidates": [{"content": {"parts": [{"text": said}]}}]}
        return {"object": "chat.completion", "choices": [{"message": {"content": said}}]}

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, body: Any, marker: str = "") -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("content-type", "text/plain" if isinstance(body, str) else "application/json")
        h.send_header("content-length", str(len(raw)))
        if marker:
            h.send_header(marker, "yes")
        h.end_headers()
        h.wfile.write(raw)


@dataclass
class Env:
    stub: Stub
    py: Stepwell
    node: Stepwell | None
    server_log: Path
    db_url: str


def start_verbose_server(ex: ExitStack, db: str, logs: Path) -> Proc:
    """``stepwell -v dev``: the key must stay out of even the debug log."""
    port = free_port()
    args = [
        *stepwell_args("dev", "--database-url", db, "--port", str(port)),
        "--no-discovery",
        "--no-poll",
        "--retry-interval",
        "0.5",
    ]
    args.insert(args.index("dev"), "--verbose")
    return ex.enter_context(spawn(args, port=port, log=logs / "server.log"))


@pytest.fixture(scope="module")
def env(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    logs = tmp_path_factory.mktemp("gateways")
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        stub = ex.enter_context(Stub())
        server = start_verbose_server(ex, db, logs)
        app_env = clean_env(STEPWELL_URL=server.url, GW_PROVIDER_KEY=KEY)
        py_port = free_port()
        ex.enter_context(
            spawn(
                [sys.executable, str(APPS / "gateway_py_app.py"), "--port", str(py_port)],
                port=py_port,
                health="/healthz",
                log=logs / "py_app.log",
                env=app_env,
            )
        )
        py = Stepwell(server.url, app="e2e-gw-py")
        ex.callback(py.close)
        py.sync(f"http://127.0.0.1:{py_port}/api/inngest")
        node = None
        node_bin = shutil.which("node")
        if node_bin and (APPS / "node_app" / "node_modules" / "inngest").exists():
            node_port = free_port()
            ex.enter_context(
                spawn(
                    [node_bin, str(APPS / "node_app" / "gateway.mjs"), "--port", str(node_port)],
                    port=node_port,
                    health="/healthz",
                    log=logs / "node_app.log",
                    env=app_env,
                )
            )
            node = Stepwell(server.url, app="e2e-gw-node")
            ex.callback(node.close)
            node.sync(f"http://127.0.0.1:{node_port}/api/inngest")
        yield Env(stub, py, node, server.log, db)


def node_of(env: Env) -> Stepwell:
    if env.node is None:
        pytest.skip("Node.js or the Node SDK app's packages are not installed")
    return env.node


def trace_step(sw: Stepwell, run_id: str, name: str) -> dict[str, Any]:
    """The run's span for step ``name``, as GraphQL (the dev UI's source) shows it."""
    query = """query($id: String!) { run(runID: $id) { trace(preview: true) {
        childrenSpans { name status stepOp attempts } } } }"""
    response = sw.http.post("/v0/gql", json={"query": query, "variables": {"id": run_id}})
    assert response.status_code == 200 and not response.json().get("errors"), response.text
    spans = response.json()["data"]["run"]["trace"]["childrenSpans"]
    found: dict[str, Any] = next(s for s in spans if s["name"] == name)
    return found


def token(behaviour: str = "ok") -> str:
    return f"tok-{uuid.uuid4().hex[:12]}-{behaviour}"


def assert_rejected(output: Any) -> None:
    """The SDK threw the memoized AIGatewayError: upstream's name, message and stack."""
    assert output["name"] == "AIGatewayError"
    assert output["message"] == "Error making AI request: unsuccessful status code: 400"
    assert json.loads(output["stack"]) == {"error": {"message": "bad request", "type": "invalid"}}


# --- step.ai.infer ----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_python_ai_infer_sends_the_request_once_and_memoizes_the_answer(
    env: Env, provider: str
) -> None:
    tok = token()
    data = {"provider": provider, "base_url": f"{env.stub.url}/{provider}/v1", "prompt": tok}
    run = env.py.run_of(env.py.send("e2e/gw.py.ai", data), "e2e-gw-py-ai")
    assert run["status"] == "Completed", run
    [sent] = env.stub.requests(tok)
    assert sent.method == "POST"
    if provider == "anthropic":
        assert sent.path == "/anthropic/v1/messages"
        assert sent.headers["x-api-key"] == KEY and "authorization" not in sent.headers
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert sent.json() == {
            "messages": [{"role": "user", "content": tok}],
            "max_tokens": 64,
            "model": "claude-test",
        }
        assert run["output"]["out"]["content"][0]["text"] == json.dumps(sent.json())
    else:
        assert sent.path == "/openai/v1/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.json() == {"messages": [{"role": "user", "content": tok}], "model": "gpt-test"}
        assert run["output"]["out"]["choices"][0]["message"]["content"] == json.dumps(sent.json())


def test_python_ai_infer_retries_a_provider_5xx_then_succeeds(env: Env) -> None:
    tok = token("flaky")
    data = {"provider": "openai", "base_url": f"{env.stub.url}/openai/v1", "prompt": tok}
    run = env.py.run_of(env.py.send("e2e/gw.py.ai", data), "e2e-gw-py-ai")
    assert run["status"] == "Completed", run
    assert len(env.stub.requests(tok)) == 2  # the 503, then the retry
    assert tok in run["output"]["out"]["choices"][0]["message"]["content"]
    ask = trace_step(env.py, run["run_id"], "ask")
    # ``attempts`` is the latest attempt, 0-based: the retry completed the step.
    assert (ask["stepOp"], ask["status"], ask["attempts"]) == ("AI_GATEWAY", "COMPLETED", 1)


def test_python_ai_infer_fails_with_upstreams_error_after_the_retries(env: Env) -> None:
    tok = token("reject")
    data = {"provider": "openai", "base_url": f"{env.stub.url}/openai/v1", "prompt": tok}
    run = env.py.run_of(env.py.send("e2e/gw.py.ai", data), "e2e-gw-py-ai")
    assert run["status"] == "Failed", run
    assert len(env.stub.requests(tok)) == 3  # retries: 2, as upstream retries any non-2xx
    assert_rejected(run["output"])
    ask = trace_step(env.py, run["run_id"], "ask")
    assert (ask["stepOp"], ask["status"], ask["attempts"]) == ("AI_GATEWAY", "FAILED", 2)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_node_ai_infer_with_each_model_helper(env: Env, provider: str) -> None:
    node = node_of(env)
    tok = token()
    data = {"provider": provider, "base_url": f"{env.stub.url}/{provider}/", "prompt": tok}
    run = node.run_of(node.send("e2e/gw.node.ai", data), "e2e-gw-node-ai")
    assert run["status"] == "Completed", run
    [sent] = env.stub.requests(tok)
    if provider == "gemini":
        assert sent.path == "/gemini/models/gemini-test:generateContent"
        assert sent.query == {"key": [KEY]}
        assert sent.json() == {"contents": [{"role": "user", "parts": [{"text": tok}]}]}
        assert run["output"]["out"]["candidates"][0]["content"]["parts"][0]["text"] == (
            json.dumps(sent.json())
        )
    elif provider == "anthropic":
        assert sent.path == "/anthropic/messages" and sent.headers["x-api-key"] == KEY
        assert sent.json()["model"] == "claude-test" and sent.json()["max_tokens"] == 64
    else:
        assert sent.path == "/openai/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.json()["model"] == "gpt-test"


def test_node_ai_infer_retries_then_succeeds(env: Env) -> None:
    node = node_of(env)
    tok = token("flaky")
    data = {"provider": "openai", "base_url": f"{env.stub.url}/openai/", "prompt": tok}
    run = node.run_of(node.send("e2e/gw.node.ai", data), "e2e-gw-node-ai")
    assert run["status"] == "Completed", run
    assert len(env.stub.requests(tok)) == 2


def test_node_ai_infer_rejected_by_the_provider_fails_the_run(env: Env) -> None:
    node = node_of(env)
    tok = token("reject")
    data = {"provider": "anthropic", "base_url": f"{env.stub.url}/anthropic/", "prompt": tok}
    run = node.run_of(node.send("e2e/gw.node.ai", data), "e2e-gw-node-ai")
    assert run["status"] == "Failed", run
    assert len(env.stub.requests(tok)) == 3
    assert_rejected(run["output"])


# --- step.fetch -----------------------------------------------------------------------------


def test_node_fetch_is_made_by_the_server_and_memoized(env: Env) -> None:
    node = node_of(env)
    tok = token()
    data = {
        "url": f"{env.stub.url}/site/{tok}?q=1",
        "method": "POST",
        "headers": {"x-token": "user-token", "content-type": "text/plain"},
        "body": "a=1&b=2",
    }
    run = node.run_of(node.send("e2e/gw.node.fetch", data), "e2e-gw-node-fetch")
    assert run["status"] == "Completed", run
    assert run["output"] == {
        "status": 201,
        "body": f"POST /site/{tok} a=1&b=2",
        "stub_header": "yes",
    }
    [sent] = env.stub.requests(tok)  # once: the SDK's next call read the memo
    assert sent.method == "POST" and sent.query == {"q": ["1"]}
    assert sent.headers["x-token"] == "user-token" and sent.body == b"a=1&b=2"
    # Upstream's GraphQL shows step.fetch as AI_GATEWAY too.
    span = trace_step(node, run["run_id"], f"step.fetch: {urlsplit(data['url']).hostname}")
    assert (span["stepOp"], span["status"]) == ("AI_GATEWAY", "COMPLETED")


def test_node_fetch_to_a_refused_port_gives_upstreams_gateway_error(env: Env) -> None:
    node = node_of(env)
    closed = free_port()  # nothing listens there
    data = {"url": f"http://127.0.0.1:{closed}/nothing"}
    run = node.run_of(node.send("e2e/gw.node.fetch", data), "e2e-gw-node-fetch")
    assert run["status"] == "Completed", run
    assert run["output"] == {
        "caught": {
            "name": "GatewayError",
            "message": "Error making gateway request: Unable to reach SDK URL",
        }
    }


# --- the key ----------------------------------------------------------------------------------


def test_the_provider_key_is_neither_logged_nor_stored(env: Env) -> None:
    # Runs last in this module: every request above handed the server the key.
    tok = token()
    data = {"provider": "openai", "base_url": f"{env.stub.url}/openai/v1", "prompt": tok}
    run = env.py.run_of(env.py.send("e2e/gw.py.ai", data), "e2e-gw-py-ai")
    assert run["status"] == "Completed" and env.stub.requests(tok)[0].headers["authorization"]
    assert KEY not in env.server_log.read_text()
    with psycopg.connect(env.db_url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM run_history WHERE payload::text LIKE %s", (f"%{KEY}%",)
        ).fetchone()
    assert stored == (0,)
