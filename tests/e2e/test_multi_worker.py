"""Three ``stepwell worker`` processes on one database: limits hold, decisions happen once."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_server
from tests.e2e.test_flow_control import FLOW_APP, max_in_flight, runs_of
from tests.processes import clean_env, free_port, spawn, stepwell_args

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stepwell, Path]]:
    logs = tmp_path_factory.mktemp("cluster")
    with cloned_database(pg_admin_url, template_db) as db, ExitStack() as ex:
        server = start_server(ex, db, logs, "--workers", "0")  # HTTP only
        for n in range(3):
            ex.enter_context(
                spawn(
                    stepwell_args("worker", "--database-url", db, "--retry-interval", "0.5"),
                    log=logs / f"worker-{n}.log",
                    ready_text="stepwell worker running",
                )
            )
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
        yield sw, logs / "steps.jsonl"


def test_three_workers_never_exceed_a_concurrency_limit(
    cluster: tuple[Stepwell, Path], record_property: pytest.RecordProperty
) -> None:
    sw, log = cluster
    events = [sw.send("e2e/flow.limited", {"seconds": 0.3}) for _ in range(24)]
    for event in events:
        assert sw.run_of(event, "e2e-flow-limited", timeout=90)["status"] == "Completed"
    peak = max_in_flight(log, "limited")
    record_property("max_in_flight_with_limit_2", peak)
    print(f"\nmax steps in flight with concurrency=2 across 3 workers: {peak}")
    assert peak == 2


def test_three_workers_make_each_flow_decision_once(cluster: tuple[Stepwell, Path]) -> None:
    sw, _ = cluster
    rate = [sw.send("e2e/flow.rate", {"n": i}) for i in range(6)]
    debounce = [sw.send("e2e/flow.debounce", {"group": "g", "n": i}) for i in range(4)]
    batch = [sw.send("e2e/flow.batch", {"n": i}) for i in range(5)]
    throttle = [sw.send("e2e/flow.throttle", {"n": i}) for i in range(3)]
    for event in throttle:
        assert sw.run_of(event, "e2e-flow-throttled", timeout=30)["status"] == "Completed"
    time.sleep(3)  # the debounce period is 2 s
    assert len(runs_of(sw, rate, "e2e-flow-rate-limited")) == 1
    [debounced] = runs_of(sw, debounce, "e2e-flow-debounced")
    assert sw.wait_run(str(debounced["run_id"]))["output"] == 3
    # Every event of the batch points at the same, single run.
    [batched_run] = {str(r["run_id"]) for r in runs_of(sw, batch, "e2e-flow-batched")}
    assert sorted(sw.wait_run(batched_run)["output"]) == [0, 1, 2, 3, 4]
