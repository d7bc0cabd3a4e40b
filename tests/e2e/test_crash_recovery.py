"""``kill -9`` of the Stepwell process in the middle of multi-step runs, then a restart.

Every run must complete; no step may run more often than its retries allow; and no step
result may be recorded twice (checked over the whole history table).
"""

from __future__ import annotations

import collections
import json
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from tests.e2e.apps._log import read_log
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_py_app, start_server

pytestmark = pytest.mark.e2e


def history_invariants(db_url: str) -> dict[str, list[str]]:
    """Per run: versions are 1..n without gaps, and each step result appears once."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT run_id, version, type, payload FROM run_history ORDER BY run_id, version"
        ).fetchall()
    by_run: dict[str, list[str]] = collections.defaultdict(list)
    results: collections.Counter[tuple[str, str]] = collections.Counter()
    for run_id, version, kind, payload in rows:
        assert version == len(by_run[run_id]) + 1, f"gap in run {run_id} at {version}"
        by_run[run_id].append(kind)
        if kind in ("StepCompleted", "StepFailed", "SleepCompleted"):
            results[(run_id, payload["step_id"])] += 1
    duplicated = {k: v for k, v in results.items() if v > 1}
    assert not duplicated, f"step results recorded twice: {duplicated}"
    return by_run


def test_killing_the_server_mid_run_loses_nothing_and_duplicates_nothing(
    db_url: str, tmp_path: Path
) -> None:
    runs = 12
    with ExitStack() as apps:
        first = ExitStack()
        server = start_server(first, db_url, tmp_path, name="server-1")
        _app, app_url = start_py_app(apps, server.url, tmp_path)
        client = Stepwell(server.url)
        apps.callback(client.close)
        client.sync(app_url)
        events = [client.send("e2e/sequential", {"base": i}) for i in range(runs)]
        events.append(client.send("e2e/sleep", {"seconds": 3}))
        time.sleep(0.4)  # some runs are mid-step, the sleeper is asleep
        server.kill9()
        first.close()
        restart = ExitStack()
        apps.enter_context(restart)
        server = start_server(
            restart, db_url, tmp_path, name="server-2", port=int(server.url.rsplit(":", 1)[1])
        )
        client = Stepwell(server.url)
        apps.callback(client.close)
        finished = []
        for i, event in enumerate(events[:runs]):
            run = client.run_of(event, "e2e-py-sequential", timeout=60)
            assert run["status"] == "Completed", run
            assert run["output"]["sum"] == (i + 1) + (i + 2) + (i + 2) * 10
            finished.append(run["run_id"])
        sleeper = client.run_of(events[-1], "e2e-py-sleeper", timeout=60)
        assert sleeper["status"] == "Completed"
        log = read_log(tmp_path / "steps.jsonl")
        for run_id in finished:
            per_step = collections.Counter(r["step"] for r in log if r["run_id"] == run_id)
            assert set(per_step) == {"a", "b", "c"}
            assert max(per_step.values()) <= 5, per_step  # default retries 4 => 5 attempts
        history = history_invariants(db_url)
        assert all(kinds[-1] == "RunCompleted" for kinds in history.values()), json.dumps(
            {k: v for k, v in history.items() if v[-1] != "RunCompleted"}
        )
