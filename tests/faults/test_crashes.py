"""``kill -9`` and restarts under load: nothing accepted is lost, nothing is recorded twice.

Each test has its own database and runs the official Python SDK app ``apps/slow_app.py``
(steps that take a moment, and a sleep between them), then breaks something mid-load:

* one of two ``stepwell worker`` processes is killed while steps are in flight (the server only
  serves HTTP); its items come back when their lease (shortened to 3 s) expires;
* the whole server is killed while events pour in, and restarted on the same database;
* a dedicated embedded PostgreSQL is restarted (``pg_ctl restart -m fast``) twice while events
  pour in; the server's pool and LISTEN connection must recover by themselves.

Afterwards every event the API accepted (answered 200) has a Completed run with the right
output, and ``check_history_invariants`` holds over the whole ``run_history`` table.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.store.urls import libpq_url
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_server
from tests.faults.invariants import check_history_invariants, wait_until_final
from tests.processes import ROOT, Proc, clean_env, free_port, spawn, stepwell_args

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLOW_APP = ROOT / "tests" / "faults" / "apps" / "slow_app.py"
LEASE = "3"  # seconds: how long a dead worker's items stay claimed
FINISH_TIMEOUT = 90


def start_slow_app(ex: ExitStack, server_url: str, logs: Path) -> str:
    port = free_port()
    ex.enter_context(
        spawn(
            [sys.executable, str(SLOW_APP), "--port", str(port)],
            port=port,
            health="/healthz",
            log=logs / "slow_app.log",
            env=clean_env(STEPWELL_URL=server_url, FAULTS_LOG=str(logs / "steps.jsonl")),
        )
    )
    return f"http://127.0.0.1:{port}/api/inngest"


def worker_args(db_url: str) -> list[str]:
    """A ``stepwell worker`` with 3 slots, a short lease and a short retry interval."""
    options = {"--workers": "3", "--lease-seconds": LEASE, "--retry-interval": "0.2"}
    return stepwell_args("worker", "--database-url", db_url, *itertools.chain(*options.items()))


def steps_log(logs: Path) -> list[dict[str, Any]]:
    path = logs / "steps.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def in_flight(logs: Path) -> int:
    """Step executions that entered and have not exited yet."""
    phases = collections.Counter(r["phase"] for r in steps_log(logs))
    return phases["enter"] - phases["exit"]


def leased_calls(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM queue_items"
            " WHERE kind IN ('start', 'edge') AND leased_until > now()"
        ).fetchone()
    return int(row[0]) if row else 0


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Sender(threading.Thread):
    """Sends ``faults/slow`` events until stopped; remembers the ids the API accepted."""

    def __init__(self, base_url: str, seconds: float, limit: int = 400) -> None:
        super().__init__(name="event-sender", daemon=True)
        self.base_url = base_url
        self.seconds = seconds
        self.limit = limit
        self.accepted: dict[str, int] = {}  # internal id -> n
        self.refused = 0
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            for n in range(self.limit):
                if self.halt.is_set():
                    return
                event = {"name": "faults/slow", "data": {"n": n, "seconds": self.seconds}}
                try:
                    response = http.post(f"{self.base_url}/e/key", json=[event])
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    [internal_id] = response.json()["ids"]
                    self.accepted[internal_id] = n
                else:
                    self.refused += 1
                    time.sleep(0.05)
                time.sleep(0.03)

    def stop(self) -> dict[str, int]:
        self.halt.set()
        self.join(30)
        assert not self.is_alive()
        return dict(self.accepted)


@contextmanager
def sending(base_url: str, seconds: float) -> Iterator[Sender]:
    sender = Sender(base_url, seconds)
    sender.start()
    try:
        yield sender
    finally:
        sender.halt.set()


def assert_all_completed(db_url: str, accepted: dict[str, int], logs: Path) -> None:
    """Every accepted event has one Completed run with its output; the history is sound."""
    assert accepted, "no event was accepted"
    by_event = wait_until_final(db_url, accepted, timeout=FINISH_TIMEOUT)
    with psycopg.connect(db_url) as conn:
        outputs = dict(conn.execute("SELECT run_id, output FROM runs").fetchall())
    for event_id, n in accepted.items():
        [(run_id, status)] = by_event[event_id]
        assert status == "Completed", (event_id, run_id, status)
        assert outputs[run_id] == {"a": n + 1, "b": 2 * (n + 1), "n": n}, outputs[run_id]
    history = check_history_invariants(db_url)
    assert all(kinds[-1] == "RunCompleted" for kinds in history.values())
    executions = collections.Counter(
        (r["run_id"], r["step"]) for r in steps_log(logs) if r["phase"] == "enter"
    )
    assert max(executions.values()) <= 5, executions.most_common(3)  # retries=4: 5 attempts


def test_killing_a_worker_mid_step_delays_its_runs_until_the_lease_expires_and_loses_none(
    db_url: str, tmp_path: Path
) -> None:
    with ExitStack() as ex:
        server = start_server(ex, db_url, tmp_path, "--workers", "0")  # HTTP only
        workers: list[Proc] = [
            ex.enter_context(
                spawn(
                    worker_args(db_url),
                    log=tmp_path / f"worker-{n}.log",
                    ready_text="stepwell worker running",
                )
            )
            for n in range(2)
        ]
        sw = Stepwell(server.url, app="faults")
        ex.callback(sw.close)
        sw.sync(start_slow_app(ex, server.url, tmp_path))
        accepted = {sw.send("faults/slow", {"n": n, "seconds": 1.5}): n for n in range(12)}
        # More calls leased than one worker may hold (3): both workers have steps in flight.
        wait_for(lambda: leased_calls(db_url) > 3 and in_flight(tmp_path) > 3, 30, "busy workers")
        workers[0].kill9()
        killed_at = time.monotonic()
        assert_all_completed(db_url, accepted, tmp_path)
        assert time.monotonic() - killed_at >= float(LEASE) * 0.9  # the dead items waited
        assert "Traceback" not in workers[1].output(), workers[1].output()[-3000:]


def test_killing_the_server_under_load_loses_no_accepted_event(db_url: str, tmp_path: Path) -> None:
    with ExitStack() as ex:
        first = ExitStack()
        server = start_server(first, db_url, tmp_path, "--lease-seconds", LEASE, name="server-1")
        port = int(server.url.rsplit(":", 1)[1])
        sw = Stepwell(server.url, app="faults")
        ex.callback(sw.close)
        sw.sync(start_slow_app(ex, server.url, tmp_path))
        with sending(server.url, seconds=0.3) as sender:
            wait_for(lambda: in_flight(tmp_path) >= 3 and len(sender.accepted) >= 15, 30, "load")
            server.kill9()
            first.close()
            time.sleep(0.5)  # requests sent now fail: they are not accepted, nothing is lost
            start_server(ex, db_url, tmp_path, "--lease-seconds", LEASE, name="server-2", port=port)
            before = len(sender.accepted)
            wait_for(lambda: len(sender.accepted) >= before + 10, 30, "events after restart")
            accepted = sender.stop()
        assert sender.refused > 0  # some sends hit the dead server
        assert_all_completed(db_url, accepted, tmp_path)


def _pg_ctl(handle: Any, *args: str) -> None:
    """Run the embedded server's own ``pg_ctl`` on its data directory, as its system user."""
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", *args], pgdata=handle.pgdata, user=handle.system_user, timeout=60)


def _restart_postgres(handle: Any) -> None:
    """``pg_ctl restart -m fast`` on the embedded server: every connection is cut."""
    _pg_ctl(handle, "restart", "-m", "fast")


@contextmanager
def restartable_postgres(data_dir: Path) -> Iterator[tuple[str, Any]]:
    """A dedicated, migrated embedded PostgreSQL (URL, handle) that tests may restart."""
    from app.embedded import start_embedded

    url, handle = start_embedded(data_dir)
    try:
        subprocess.run(
            stepwell_args("migrate", "--database-url", url),
            check=True, env=clean_env(), cwd=ROOT, capture_output=True, timeout=120,
        )  # fmt: skip
        yield url, handle
    finally:
        # After a restart the handle's postmaster pid is stale, so its cleanup() would leave
        # the new postmaster running: stop it by its data directory instead.
        with contextlib.suppress(subprocess.CalledProcessError):
            _pg_ctl(handle, "stop", "-m", "fast")
        handle.cleanup()


def test_a_postgres_restart_under_load_is_survived_and_loses_no_accepted_event(
    tmp_path: Path,
) -> None:
    with restartable_postgres(tmp_path / "pg") as (url, handle):
        _load_through_postgres_restarts(url, handle, tmp_path)


def _load_through_postgres_restarts(url: str, handle: Any, logs: Path) -> None:
    with ExitStack() as ex:
        server = start_server(ex, url, logs, "--lease-seconds", LEASE)
        sw = Stepwell(server.url, app="faults")
        ex.callback(sw.close)
        sw.sync(start_slow_app(ex, server.url, logs))
        with sending(server.url, seconds=0.3) as sender:
            for restart in range(2):
                seen = len(sender.accepted)
                wait_for(lambda s=seen: len(sender.accepted) >= s + 10, 30, "load")
                wait_for(lambda: in_flight(logs) >= 2, 30, "steps in flight")
                _restart_postgres(handle)
                if restart == 0:
                    time.sleep(1)
            after = len(sender.accepted)
            wait_for(lambda: len(sender.accepted) >= after + 10, 30, "events after the restarts")
            accepted = sender.stop()
        db_url = libpq_url(url)
        assert_all_completed(db_url, accepted, logs)
        # The HTTP API answers normally again (its pool dropped the dead connections), and the
        # queue listener is back on its channel.
        assert httpx.get(f"{server.url}/v1/events", timeout=10).status_code == 200
        wait_for(lambda: listeners(db_url) >= 1, 10, "the LISTEN connection to come back")


def listeners(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN %'"
        ).fetchone()
    return int(row[0]) if row else 0
