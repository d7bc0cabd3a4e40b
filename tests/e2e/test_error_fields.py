"""A failed step's or run's error keeps every field the SDK sent, wherever it is read.

Real servers, real SDK apps (``apps/errors_py_app.py``, ``apps/node_app/errors.mjs``), each
function failing so that the SDK sends one error ``code`` (Python: ``unknown``,
``step_errored``, ``non_retriable_error``, ``output_unserializable``, ``step_unexpected``;
TypeScript: a thrown error's own ``code``, a ``cause``, the ``__serialized`` marker).  For each
the test reads the run's output (REST and GraphQL), the failed step's output (GraphQL trace),
the run page, the ``inngest/function.failed`` event and what the onFailure handler received.

The function.failed ``error`` is Inngest's StandardError (``error``, ``name``, ``message``, a
non-empty ``stack``, ``cause``), exactly as the official Python SDK's suite asserts it; the
SDK's own object, every field kept, is its ``result``.
"""

from __future__ import annotations

import html
import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_server
from tests.processes import ROOT, clean_env, free_port, spawn

pytestmark = pytest.mark.e2e
APPS = ROOT / "tests" / "e2e" / "apps"
FAILED = "inngest/function.failed"
HTTP_500 = "invalid status code: 500"
NO_RETRY = "NonRetriableError"  # the reason when the SDK answered X-Inngest-No-Retry: true


class Stack:
    """A stack trace from the given file: matches any string that names it (``==``)."""

    def __init__(self, starts: str, names: str) -> None:
        self.starts, self.names = starts, names

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(self.starts) and self.names in other

    __hash__ = None  # type: ignore[assignment]  # equal to many strings: not hashable

    def __repr__(self) -> str:
        return f"<stack starting {self.starts!r} naming {self.names!r}>"


def py_traceback() -> Stack:
    return Stack("Traceback (most recent call last):", "errors_py_app.py")


def js_stack(head: str) -> Stack:
    return Stack(head, "errors.mjs")


@dataclass
class Apps:
    py: Stepwell
    node: Stepwell | None


@pytest.fixture(scope="module")
def apps(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Apps]:
    logs = tmp_path_factory.mktemp("errors")
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        server = start_server(ex, db, logs)
        env = clean_env(STEPWELL_URL=server.url)
        py_port = free_port()
        ex.enter_context(
            spawn(
                [sys.executable, str(APPS / "errors_py_app.py"), "--port", str(py_port)],
                port=py_port,
                health="/healthz",
                log=logs / "errors_py_app.log",
                env=env,
            )
        )
        py = Stepwell(server.url, app="errors-py")
        ex.callback(py.close)
        py.sync(f"http://127.0.0.1:{py_port}/api/inngest")
        node: Stepwell | None = None
        node_bin = shutil.which("node")
        if node_bin and (APPS / "node_app" / "node_modules" / "inngest").exists():
            node_port = free_port()
            ex.enter_context(
                spawn(
                    [node_bin, str(APPS / "node_app" / "errors.mjs"), "--port", str(node_port)],
                    port=node_port,
                    health="/healthz",
                    log=logs / "errors_node_app.log",
                    env=env,
                )
            )
            node = Stepwell(server.url, app="errors-node")
            ex.callback(node.close)
            node.sync(f"http://127.0.0.1:{node_port}/api/inngest")
        yield Apps(py=py, node=node)


@pytest.fixture
def node(apps: Apps) -> Stepwell:
    if apps.node is None:
        pytest.skip("Node.js or the Node SDK app's packages are not installed")
    return apps.node


# --- reading the error back everywhere a user can ---------------------------------------


def fail(sw: Stepwell, fn_id: str, message: str | None = None) -> dict[str, Any]:
    """Trigger ``fn_id`` and return its finished run (REST), which must have failed."""
    prefix = sw.app.removeprefix("errors-")
    data = {"message": message} if message else {}
    run = sw.run_of(sw.send(f"errors/{prefix}.{fn_id}", data), f"{sw.app}-{fn_id}", timeout=60)
    assert run["status"] == "Failed", run
    return run


def gql(sw: Stepwell, query: str, **variables: Any) -> dict[str, Any]:
    response = sw.http.post("/v0/gql", json={"query": query, "variables": variables})
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body
    return dict(body["data"])


def gql_output(sw: Stepwell, run_id: str) -> Any:
    found = gql(sw, "query($id: String!) { run(runID: $id) { output } }", id=run_id)
    return json.loads(found["run"]["output"])


def step_error(sw: Stepwell, run_id: str, step: str) -> dict[str, Any]:
    """The error of the step span named ``step``, as GraphQL's trace gives it."""
    trace = gql(
        sw,
        "query($id: String!) { run(runID: $id) { trace { childrenSpans { name outputID } } } }",
        id=run_id,
    )["run"]["trace"]
    [span] = [s for s in trace["childrenSpans"] if s["name"] == step]
    output = gql(
        sw,
        """query($id: String!) { runTraceSpanOutputByID(outputID: $id) {
            data error { name message stack } } }""",
        id=span["outputID"],
    )["runTraceSpanOutputByID"]
    assert output["data"] is None
    return dict(output["error"])


def failed_event(sw: Stepwell, run_id: str, timeout: float = 20) -> dict[str, Any]:
    """The ``inngest/function.failed`` event of ``run_id`` (REST v1, asked for by name)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = sw.http.get("/v1/events", params={"name": FAILED, "limit": 100})
        response.raise_for_status()
        for event in response.json()["data"]:
            if event["data"].get("run_id") == run_id:
                assert event["id"] == run_id  # deduplicable by run id
                return dict(event)
        time.sleep(0.1)
    raise AssertionError(f"no {FAILED} event for run {run_id}")


def on_failure_saw(sw: Stepwell, event: dict[str, Any]) -> dict[str, Any]:
    """What the onFailure handler run triggered by ``event`` received (its output)."""
    [handler] = sw.wait_for_runs(event["internal_id"])
    done = sw.wait_run(handler["run_id"])
    assert done["status"] == "Completed", done
    return dict(done["output"])


def run_page(sw: Stepwell, run_id: str) -> str:
    response = sw.http.get(f"/runs/{run_id}")
    response.raise_for_status()
    return html.unescape(response.text)


def code_shown(page: str, code: str) -> bool:
    return f'<code class="error-code" title="error code">{code}</code>' in page


def assert_everywhere(
    sw: Stepwell, run: dict[str, Any], sent: dict[str, Any], standard: dict[str, Any]
) -> dict[str, Any]:
    """The run output is ``sent`` (REST and GraphQL); function.failed and the onFailure
    handler carry ``standard`` as ``error`` and ``sent`` as ``result``.  Returns what the
    handler received."""
    assert run["output"] == sent
    assert gql_output(sw, run["run_id"]) == sent
    event = failed_event(sw, run["run_id"])
    assert event["data"]["error"] == standard
    assert event["data"]["result"] == sent
    slugs = {internal: slug for slug, internal in sw.functions(sw.app).items()}
    assert event["data"]["function_id"] == slugs[run["function_id"]]
    saw = on_failure_saw(sw, event)
    assert (saw["event_name"], saw["run_id"]) == (FAILED, run["run_id"])
    assert saw["error"] == standard and saw["result"] == sent
    return saw


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:8]}"


# --- Python SDK ----------------------------------------------------------------------------


def test_py_a_plain_raise_keeps_code_unknown_and_its_traceback(apps: Apps) -> None:
    message = unique("plain raise")
    run = fail(apps.py, "raise", message)
    sent = {"code": "unknown", "name": "MyError", "message": message, "stack": py_traceback()}
    standard = {"error": HTTP_500, "name": "MyError", "message": message, "stack": py_traceback()}
    assert_everywhere(apps.py, run, sent, standard)
    # The handler got the very stack the SDK sent, not a rebuilt one.
    assert failed_event(apps.py, run["run_id"])["data"]["error"]["stack"] == run["output"]["stack"]
    assert code_shown(run_page(apps.py, run["run_id"]), "unknown")


def test_py_a_failed_step_gives_step_errored_and_keeps_the_step_error(apps: Apps) -> None:
    message = unique("step broke")
    run = fail(apps.py, "step-fails", message)
    sent = {"code": "step_errored", "name": "ValueError", "message": message,
            "stack": py_traceback()}  # fmt: skip
    # The SDK raises StepError, which is never retried: it says so with X-Inngest-No-Retry.
    standard = {"error": NO_RETRY, "name": "ValueError", "message": message,
                "stack": py_traceback()}  # fmt: skip
    assert_everywhere(apps.py, run, sent, standard)
    assert step_error(apps.py, run["run_id"], "boom") == {
        "name": "ValueError",
        "message": message,
        "stack": py_traceback(),
    }
    page = run_page(apps.py, run["run_id"])
    # The run's code, and the step's own (the SDK reports a step's ValueError as "unknown").
    assert code_shown(page, "step_errored") and code_shown(page, "unknown")


def test_py_a_non_retriable_error_keeps_its_code(apps: Apps) -> None:
    message = unique("stop here")
    run = fail(apps.py, "non-retriable", message)
    sent = {"code": "non_retriable_error", "name": "NonRetriableError", "message": message,
            "stack": py_traceback()}  # fmt: skip
    standard = {"error": NO_RETRY, "name": "NonRetriableError", "message": message,
                "stack": py_traceback()}  # fmt: skip
    # The SDK fails the whole call with it (no step op), so the run's output is this error.
    assert_everywhere(apps.py, run, sent, standard)
    assert code_shown(run_page(apps.py, run["run_id"]), "non_retriable_error")


def test_py_unserializable_output_has_no_stack_and_none_is_added(apps: Apps) -> None:
    run = fail(apps.py, "unserializable")
    message = '"step_1" returned unserializable data'
    sent = {"code": "output_unserializable", "name": "OutputUnserializableError",
            "message": message}  # fmt: skip
    standard = {"error": HTTP_500, "name": "OutputUnserializableError", "message": message}
    assert_everywhere(apps.py, run, sent, standard)
    assert "stack" not in run["output"]
    assert code_shown(run_page(apps.py, run["run_id"]), "output_unserializable")


def test_py_an_unexpected_step_keeps_its_null_stack(apps: Apps) -> None:
    run = fail(apps.py, "unexpected-step")
    message = 'found step "unexpected" when targeting a different step'
    sent = {"code": "step_unexpected", "name": "StepUnexpectedError", "message": message,
            "stack": None}  # fmt: skip
    # A null stack is kept in the output, and left out of the StandardError (as Inngest does).
    standard = {"error": HTTP_500, "name": "StepUnexpectedError", "message": message}
    assert_everywhere(apps.py, run, sent, standard)
    assert "stack" in run["output"] and run["output"]["stack"] is None


def test_py_an_invoke_timeout_is_step_errored_with_a_null_stack(apps: Apps) -> None:
    run = fail(apps.py, "invoke-timeout")
    name = "InngestInvokeTimeoutError"
    message = "Timed out waiting for invoked function to complete"
    sent = {"code": "step_errored", "name": name, "message": message, "stack": None}
    standard = {"error": NO_RETRY, "name": name, "message": message}
    assert_everywhere(apps.py, run, sent, standard)
    assert step_error(apps.py, run["run_id"], "call-slow") == {
        "name": name,
        "message": message,
        "stack": None,
    }


# --- TypeScript SDK ------------------------------------------------------------------------


def test_node_a_thrown_error_keeps_its_own_code_and_serialization_marker(node: Stepwell) -> None:
    message = unique("plain throw")
    run = fail(node, "raise", message)
    stack = js_stack(f"TypeError: {message}")
    sent = {"name": "TypeError", "message": message, "stack": stack, "code": "E_CUSTOM",
            "__serialized": True}  # fmt: skip
    # retries: 0, so the SDK answers the last attempt with X-Inngest-No-Retry.
    standard = {"error": NO_RETRY, "name": "TypeError", "message": message, "stack": stack}
    saw = assert_everywhere(node, run, sent, standard)
    assert saw["rebuilt"] == {"name": "TypeError", "message": message}
    assert code_shown(run_page(node, run["run_id"]), "E_CUSTOM")


def test_node_a_failed_step_keeps_the_step_error(node: Stepwell) -> None:
    message = unique("step broke")
    run = fail(node, "step-fails", message)
    stack = js_stack(f"Error: {message}")
    sent = {"name": "Error", "message": message, "stack": stack, "__serialized": True}
    standard = {"error": NO_RETRY, "name": "Error", "message": message, "stack": stack}
    assert_everywhere(node, run, sent, standard)
    assert step_error(node, run["run_id"], "boom") == {
        "name": "Error",
        "message": message,
        "stack": stack,
    }


def test_node_a_non_retriable_error_keeps_its_cause(node: Stepwell) -> None:
    message = unique("stop here")
    run = fail(node, "non-retriable", message)
    stack = js_stack(f"NonRetriableError: {message}")
    cause = {"name": "RangeError", "message": "root cause", "stack": js_stack("RangeError"),
             "__serialized": True}  # fmt: skip
    sent = {"name": "NonRetriableError", "message": message, "stack": stack, "cause": cause,
            "__serialized": True}  # fmt: skip
    standard = {"error": NO_RETRY, "name": "NonRetriableError", "message": message,
                "stack": stack, "cause": cause}  # fmt: skip
    saw = assert_everywhere(node, run, sent, standard)
    assert saw["rebuilt"] == {"name": "NonRetriableError", "message": message}
    assert step_error(node, run["run_id"], "boom")["name"] == "NonRetriableError"
