"""The event API through the official SDKs' own clients: partial sends and 3 MiB events.

What a user of ``inngest.send()`` sees must be what Inngest's server makes them see: a send
with a bad event among good ones stores the good ones before it and raises with their ids
(Python) or Go's error text (TypeScript); one event may be up to 3 MiB and one byte more is
refused with Go's message.  And a ~3 MiB event, or a batch too big to send inline, runs its
function to completion with the SDK receiving the events whole.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import inngest
import pytest
from inngest._internal.errors import SendEventsError

from domain.events import MAX_EVENT_BYTES
from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_server
from tests.integration.test_event_api import sdk_client
from tests.processes import ROOT, clean_env, free_port, spawn

pytestmark = pytest.mark.e2e

EVENTS_APP = ROOT / "tests" / "e2e" / "apps" / "events_py_app.py"
NODE_APP = ROOT / "tests" / "e2e" / "apps" / "node_app"
MIB = 1024 * 1024
TOO_BIG = (
    f"Event is over the max size: Max {MAX_EVENT_BYTES} bytes / Size {MAX_EVENT_BYTES + 1} bytes"
)


@dataclass
class Events:
    sw: Stepwell
    url: str


@pytest.fixture(scope="module")
def events(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Events]:
    """A Stepwell server and ``events_py_app`` (the official Python SDK on FastAPI), synced."""
    logs = tmp_path_factory.mktemp("event-parity")
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        server = start_server(ex, db, logs)
        port = free_port()
        ex.enter_context(
            spawn(
                [sys.executable, str(EVENTS_APP), "--port", str(port)],
                port=port,
                health="/healthz",
                log=logs / "events_app.log",
                env=clean_env(STEPWELL_URL=server.url),
            )
        )
        sw = Stepwell(server.url, app="e2e-events")
        ex.callback(sw.close)
        sw.sync(f"http://127.0.0.1:{port}/api/inngest")
        yield Events(sw, server.url)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def listed(sw: Stepwell, name: str) -> list[str]:
    """Internal ids of the stored events called ``name`` (what ``GET /v1/events`` lists)."""
    response = sw.http.get("/v1/events", params={"name": name})
    response.raise_for_status()
    return [e["internal_id"] for e in response.json()["data"]]


def py_event(name: str, size: int) -> inngest.Event:
    """An event whose JSON, as the Python SDK sends it, is exactly ``size`` bytes."""
    ts = int(time.time() * 1000)

    def wire(blob: str) -> inngest.Event:
        return inngest.Event(name=name, data={"blob": blob}, id=name, ts=ts)

    overhead = wire_size(wire(""))
    event = wire("x" * (size - overhead))
    assert wire_size(event) == size
    return event


def wire_size(event: inngest.Event) -> int:
    # What the SDK posts for an event: its JSON model dump, compact (httpx's encoding).
    dumped = event.model_dump(by_alias=True, mode="json")
    return len(json.dumps(dumped, separators=(",", ":"), ensure_ascii=False).encode())


def test_python_partial_send_raises_with_the_id_of_the_event_stored_before_the_bad_one(
    events: Events,
) -> None:
    name = unique("e2e/events.partial")
    batch = [inngest.Event(name=name), inngest.Event(name=""), inngest.Event(name="")]
    with (
        sdk_client(is_production=False, event_api_base_url=events.url) as sdk,
        pytest.raises(SendEventsError) as info,
    ):
        sdk.send_sync(batch)
    assert str(info.value) == "event name is empty"
    assert len(info.value.ids) == 1  # inngest-py's test_partial_send_error
    assert listed(events.sw, name) == info.value.ids


def test_python_sends_a_3_mib_event_and_one_byte_more_is_refused_with_inngest_s_error(
    events: Events,
) -> None:
    name = unique("e2e/events.max")
    with sdk_client(is_production=False, event_api_base_url=events.url) as sdk:
        ids = sdk.send_sync(py_event(name, MAX_EVENT_BYTES))
        with pytest.raises(SendEventsError) as info:
            sdk.send_sync(py_event(name, MAX_EVENT_BYTES + 1))
    assert len(ids) == 1
    assert str(info.value) == TOO_BIG and info.value.ids == []
    assert listed(events.sw, name) == ids


def test_a_3_mib_event_sent_by_the_python_sdk_runs_its_function_with_the_whole_event(
    events: Events,
) -> None:
    event = py_event("e2e/events.big", MAX_EVENT_BYTES - 64)
    with sdk_client(
        is_production=False, event_api_base_url=events.url, api_base_url=events.url
    ) as sdk:
        [event_id] = sdk.send_sync(event)
    run = events.sw.run_of(event_id, "e2e-events-big-event", timeout=60)
    blob = event.data["blob"]
    assert isinstance(blob, str) and len(blob) > 3 * MIB - 200
    assert run["status"] == "Completed", run
    assert run["output"] == {
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "measured": len(blob),
    }


def test_a_batch_too_big_to_send_inline_is_fetched_by_the_sdk_and_completes(
    events: Events,
) -> None:
    # inngest-py's batch_that_needs_api: 8 events of 1 MiB make the request to the SDK
    # larger than 4 MiB, so the SDK fetches the batch and the memoized step through the API.
    batch = [inngest.Event(name="e2e/events.batch", data={"blob": "a" * MIB}) for _ in range(8)]
    with sdk_client(
        is_production=False, event_api_base_url=events.url, api_base_url=events.url
    ) as sdk:
        ids = sdk.send_sync(batch)
    assert len(ids) == 8
    run = events.sw.run_of(ids[0], "e2e-events-big-batch", timeout=60)
    assert run["status"] == "Completed", run
    assert run["output"] == {"count": 8, "bytes": [MIB] * 8, "counted": 8}


def node_send(url: str, *args: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (NODE_APP / "node_modules" / "inngest").exists():
        pytest.skip("Node.js or the Node SDK app's packages are not installed")
    done = subprocess.run(
        [node, str(NODE_APP / "send.mjs"), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=clean_env(STEPWELL_URL=url),
        cwd=Path(NODE_APP),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_node_partial_send_throws_inngest_s_error_and_keeps_the_event_before_it_once(
    events: Events,
) -> None:
    name = unique("e2e/events.node-partial")
    result = node_send(events.url, "partial", name)
    # The TS SDK throws on any error status, and it retries a 400 (with the same seed):
    # the event before the bad one is stored, once.
    assert result == {"ok": False, "error": "Inngest API Error: 400 event name is empty"}
    assert len(listed(events.sw, name)) == 1


def test_node_sends_a_3_mib_event_and_one_byte_more_is_refused_with_inngest_s_error(
    events: Events,
) -> None:
    name = unique("e2e/events.node-max")
    largest = node_send(events.url, "sized", name, str(MAX_EVENT_BYTES))
    assert largest["ok"] is True and largest["bytes"] == MAX_EVENT_BYTES, largest
    assert listed(events.sw, name) == largest["ids"] and len(largest["ids"]) == 1
    over = node_send(events.url, "sized", name, str(MAX_EVENT_BYTES + 1))
    assert over == {
        "ok": False,
        "error": f"Inngest API Error: 400 {TOO_BIG}",
        "bytes": MAX_EVENT_BYTES + 1,
    }
    assert listed(events.sw, name) == largest["ids"]
