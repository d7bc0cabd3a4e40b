"""Flow control with the official Python SDK: what a user observes for each option."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cloned_database
from tests.e2e.apps._log import read_log
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_server
from tests.processes import ROOT, clean_env, free_port, spawn

pytestmark = pytest.mark.e2e
FLOW_APP = ROOT / "tests" / "e2e" / "apps" / "flow_app.py"


@dataclass
class Flow:
    sw: Stepwell
    log: Path
    db: str


def max_in_flight(log: Path, fn: str) -> int:
    current = peak = 0
    for record in sorted(read_log(log), key=lambda r: float(str(r["t"]))):
        if record["fn"] != fn:
            continue
        current += 1 if record["step"] == "enter" else -1 if record["step"] == "exit" else 0
        peak = max(peak, current)
    return peak


@pytest.fixture(scope="module")
def flow(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flow]:
    logs = tmp_path_factory.mktemp("flow")
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        server = start_server(ex, db, logs)
        port = free_port()
        ex.enter_context(
            spawn(
                [sys.executable, str(FLOW_APP), "--port", str(port)],
                port=port,
                health="/healthz",
                log=logs / "flow_app.log",
                env=clean_env(STEPWELL_URL=server.url, STEPWELL_E2E_LOG=str(logs / "steps.jsonl")),
            )
        )
        sw = Stepwell(server.url, app="e2e-flow")
        ex.callback(sw.close)
        sw.sync(f"http://127.0.0.1:{port}/api/inngest")
        yield Flow(sw, logs / "steps.jsonl", db)


def runs_of(sw: Stepwell, events: list[str], slug: str) -> list[dict[str, object]]:
    fn_id = sw.functions("e2e-flow")[slug]
    return [r for e in events for r in sw.runs_for_event(e) if r["function_id"] == fn_id]


def test_concurrency_two_never_runs_more_than_two_steps_at_once(flow: Flow) -> None:
    events = [flow.sw.send("e2e/flow.limited", {"i": i}) for i in range(10)]
    for event in events:
        assert flow.sw.run_of(event, "e2e-flow-limited", timeout=60)["status"] == "Completed"
    assert max_in_flight(flow.log, "limited") == 2


def test_a_keyed_concurrency_limit_applies_per_key(flow: Flow) -> None:
    events = [flow.sw.send("e2e/flow.keyed", {"user": u}) for u in ("a", "a", "a", "b", "b")]
    for event in events:
        assert flow.sw.run_of(event, "e2e-flow-keyed", timeout=60)["status"] == "Completed"
    assert max_in_flight(flow.log, "keyed:a") == 1
    assert max_in_flight(flow.log, "keyed:b") == 1


def test_a_rate_limit_starts_only_the_runs_the_gcra_admits(flow: Flow) -> None:
    events = [flow.sw.send("e2e/flow.rate", {"n": i}) for i in range(5)]
    time.sleep(2)
    # limit 2/min: burst floor(2/10) + 1 = 1 run in an instant burst; the rest are dropped.
    assert len(runs_of(flow.sw, events, "e2e-flow-rate-limited")) == 1


def test_throttle_delays_runs_beyond_limit_plus_burst(flow: Flow) -> None:
    events = [flow.sw.send("e2e/flow.throttle", {"n": i}) for i in range(3)]
    runs = [flow.sw.run_of(e, "e2e-flow-throttled", timeout=30) for e in events]
    assert all(r["status"] == "Completed" for r in runs)
    starts = sorted(
        time.mktime(time.strptime(str(r["run_started_at"])[:19], "%Y-%m-%dT%H:%M:%S")) for r in runs
    )
    assert starts[2] - starts[0] >= 1  # limit 1 + burst 1 start at once, the third ~2 s later


def test_idempotency_starts_one_run_per_key(flow: Flow) -> None:
    key = uuid.uuid4().hex
    events = [flow.sw.send("e2e/flow.idempotent", {"key": key, "n": i}) for i in range(3)]
    other = flow.sw.send("e2e/flow.idempotent", {"key": key + "x", "n": 9})
    assert flow.sw.run_of(other, "e2e-flow-idempotent")["output"] == 9
    time.sleep(1)
    assert len(runs_of(flow.sw, events, "e2e-flow-idempotent")) == 1


def test_a_debounced_burst_starts_one_run_with_the_last_event(flow: Flow) -> None:
    group = uuid.uuid4().hex
    events = []
    for i in range(4):
        events.append(flow.sw.send("e2e/flow.debounce", {"group": group, "n": i}))
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    runs: list[dict[str, object]] = []
    while time.monotonic() < deadline and not runs:
        runs = runs_of(flow.sw, events, "e2e-flow-debounced")
        time.sleep(0.2)
    [run] = runs
    assert run["event_id"] == events[-1]
    done = flow.sw.wait_run(str(run["run_id"]))
    assert done["output"] == 3


def test_a_batch_of_five_arrives_as_one_run_with_five_events(flow: Flow) -> None:
    events = [flow.sw.send("e2e/flow.batch", {"n": i}) for i in range(5)]
    deadline = time.monotonic() + 20
    runs: list[dict[str, object]] = []
    while time.monotonic() < deadline and not runs:
        runs = runs_of(flow.sw, events[:1], "e2e-flow-batched")
        time.sleep(0.2)
    [run] = runs
    done = flow.sw.wait_run(str(run["run_id"]))
    assert sorted(done["output"]) == [0, 1, 2, 3, 4]
    assert done.get("batch_id")


def test_a_partial_batch_starts_when_its_timeout_expires(flow: Flow) -> None:
    events = [flow.sw.send("e2e/flow.batch-timeout", {"n": i}) for i in range(3)]
    run = flow.sw.run_of(events[0], "e2e-flow-batched-timeout", timeout=20)
    assert sorted(run["output"]) == [0, 1, 2]


def test_priority_runs_the_higher_priority_run_first(flow: Flow) -> None:
    blocker = flow.sw.send("e2e/flow.priority", {"name": "blocker", "seconds": 1.5})
    [first] = flow.sw.wait_for_runs(blocker)
    flow.sw.wait_run(str(first["run_id"]), statuses={"Running"}, timeout=10)
    low = flow.sw.send("e2e/flow.priority", {"name": "low", "priority": 0})
    time.sleep(0.1)
    high = flow.sw.send("e2e/flow.priority", {"name": "high", "priority": 600})
    low_run = flow.sw.run_of(low, "e2e-flow-prioritized", timeout=30)
    high_run = flow.sw.run_of(high, "e2e-flow-prioritized", timeout=30)
    assert str(high_run["ended_at"]) < str(low_run["ended_at"])


def test_a_singleton_in_skip_mode_records_the_second_run_as_skipped(flow: Flow) -> None:
    first = flow.sw.send("e2e/flow.singleton", {"n": 1})
    [held] = flow.sw.wait_for_runs(first)
    second = flow.sw.send("e2e/flow.singleton", {"n": 2})
    skipped = flow.sw.run_of(second, "e2e-flow-singleton-skip", timeout=10)
    assert skipped["status"] == "Skipped"
    assert flow.sw.wait_run(str(held["run_id"]), timeout=20)["status"] == "Completed"


def test_cancel_on_cancels_with_a_matching_if_and_not_otherwise(flow: Flow) -> None:
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    run_a = flow.sw.wait_for_runs(flow.sw.send("e2e/flow.cancel-on", {"id": a}))[0]
    run_b = flow.sw.wait_for_runs(flow.sw.send("e2e/flow.cancel-on", {"id": b}))[0]
    flow.sw.wait_run(str(run_a["run_id"]), statuses={"Running"})
    flow.sw.wait_run(str(run_b["run_id"]), statuses={"Running"})
    flow.sw.send("e2e/flow.stop", {"id": a})
    assert flow.sw.wait_run(str(run_a["run_id"]), timeout=10)["status"] == "Cancelled"
    time.sleep(1)
    assert flow.sw.run(str(run_b["run_id"]))["status"] == "Running"
    flow.sw.http.delete(f"/v1/runs/{run_b['run_id']}")


def test_a_start_timeout_cancels_a_run_still_queued(flow: Flow) -> None:
    first = flow.sw.send("e2e/flow.start-timeout", {"n": 1})
    [running] = flow.sw.wait_for_runs(first)
    flow.sw.wait_run(str(running["run_id"]), statuses={"Running"}, timeout=10)
    queued = flow.sw.send("e2e/flow.start-timeout", {"n": 2})
    run = flow.sw.run_of(queued, "e2e-flow-start-timeout", timeout=20)
    assert run["status"] == "Cancelled" and run["run_started_at"]
    assert flow.sw.wait_run(str(running["run_id"]), timeout=20)["status"] == "Completed"


def test_a_finish_timeout_cancels_a_run_that_takes_too_long(flow: Flow) -> None:
    run = flow.sw.run_of(
        flow.sw.send("e2e/flow.finish-timeout"), "e2e-flow-finish-timeout", timeout=20
    )
    assert run["status"] == "Cancelled"


def test_a_cron_function_runs_on_its_schedule_with_the_timer_event(flow: Flow) -> None:
    fn_id = flow.sw.functions("e2e-flow")["e2e-flow-every-minute"]
    deadline = time.monotonic() + 75  # the next minute boundary, plus slack
    run = None
    while time.monotonic() < deadline and run is None:
        with psycopg.connect(flow.db) as conn:
            row = conn.execute(
                "SELECT run_id FROM runs WHERE function_id = %s ORDER BY queued_at LIMIT 1",
                (fn_id,),
            ).fetchone()
        run = row[0] if row else None
        time.sleep(0.5)
    assert run is not None, "the cron function did not run within a minute"
    done = flow.sw.wait_run(str(run))
    output = done["output"]
    assert output["name"] == "inngest/scheduled.timer"
    assert output["data"]["cron"] == "TZ=Europe/Paris * * * * *"
    scheduled = output["data"]["scheduledAt"]
    assert scheduled.endswith(":00Z") and output["id"] == scheduled
