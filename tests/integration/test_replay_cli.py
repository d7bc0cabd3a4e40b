"""``stepwell replay RUN_ID`` as a user runs it: timeline, ``--json``, ``--state-after N``.

Runs are driven through the real domain into a test database; the CLI runs as a subprocess
(``python -m app``) against it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass

from app.main import Services
from app.replay import state_json
from app.store.db import AsyncConn
from app.store.history import load_history
from domain.run import fold
from tests.integration.test_rebuild import (
    DONE,
    FUNCTIONS,
    Driver,
    StepClock,
    ops,
    services,  # noqa: F401 - the fixture
    step,
    step_error,
)


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


async def stepwell(*args: str) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPWELL_", "INNGEST_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def _retried_run(svc: Services) -> str:
    assert isinstance(svc.clock, StepClock)
    driver = Driver(svc, svc.clock)
    run = await driver.schedule(FUNCTIONS[0], {"order": 42}, name="shop/order.placed")
    await driver.call(run, ops(step_error("charge")), step_id="charge", attempt=0)
    await driver.call(run, ops(step("charge", {"paid": True})), step_id="charge", attempt=1)
    await driver.call(run, DONE)
    return run


async def test_replay_prints_the_timeline_of_a_run(
    services: Services,  # noqa: F811
    db_url: str,
) -> None:
    run = await _retried_run(services)
    result = await stepwell("replay", run, "--database-url", db_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"run {run}"
    assert lines[1].split() == ["#", "time", "transition", "step", "attempt", "outcome"]
    body = "\n".join(lines[2:])
    for expected in (
        "RunScheduled",
        "corpus-app-alpha v1 by shop/order.placed",
        "RunStarted",
        "StepErrored",
        "E: x; retry at",
        "StepCompleted",
        'output {"data":{"paid":true}}',
        "RunCompleted",
    ):
        assert expected in body, body
    errored = next(line for line in lines if "StepErrored" in line)
    assert "charge" in errored and " 0 " in errored
    assert lines[-1] == "status: Completed after 5 transitions"


async def test_replay_json_lists_every_transition_and_the_final_state(
    services: Services,  # noqa: F811
    conn: AsyncConn,
    db_url: str,
) -> None:
    run = await _retried_run(services)
    result = await stepwell("replay", run, "--json", "--database-url", db_url)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["run_id"] == run
    assert [t["type"] for t in doc["transitions"]] == [
        "RunScheduled",
        "RunStarted",
        "StepErrored",
        "StepCompleted",
        "RunCompleted",
    ]
    assert [t["version"] for t in doc["transitions"]] == [1, 2, 3, 4, 5]
    assert doc["transitions"][2]["step_id"] == "charge"
    assert doc["transitions"][3]["attempt"] == 1
    expected = json.loads(json.dumps(state_json(fold(await load_history(conn, run)))))
    assert doc["state"] == expected
    assert doc["state"]["status"] == "Completed"


async def test_state_after_n_is_the_fold_of_the_first_n_transitions(
    services: Services,  # noqa: F811
    conn: AsyncConn,
    db_url: str,
) -> None:
    run = await _retried_run(services)
    history = await load_history(conn, run)
    for n in (0, 1, 3, 4):
        result = await stepwell("replay", run, "--state-after", str(n), "--database-url", db_url)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["after"] == n
        assert doc["state"] == json.loads(json.dumps(state_json(fold(history[:n]))))
    after_one = json.loads(
        (
            await stepwell("replay", run, "--state-after", "1", "--json", "--database-url", db_url)
        ).stdout
    )
    assert after_one["transition"] == "RunScheduled"
    assert after_one["state"]["status"] == "Queued"
    assert after_one["state"]["steps"] == {}
    after_four = json.loads(
        (await stepwell("replay", run, "--state-after", "4", "--database-url", db_url)).stdout
    )
    assert after_four["state"]["steps"] == {"charge": {"data": {"paid": True}}}
    assert after_four["state"]["status"] == "Running"


async def test_unknown_runs_and_bad_arguments_fail_with_one_line(db_url: str) -> None:
    unknown = await stepwell("replay", "01JD0000000000000000000000", "--database-url", db_url)
    bad_id = await stepwell("replay", "not-a-run", "--database-url", db_url)
    no_db = await stepwell(
        "replay", "01JD0000000000000000000000", "--database-url", "postgresql://x@127.0.0.1:1/n"
    )
    for result, message in (
        (unknown, "stepwell: run 01JD0000000000000000000000 not found"),
        (bad_id, "stepwell: invalid run id 'not-a-run': not a ULID"),
        (no_db, "stepwell: cannot connect to the database"),
    ):
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(message), lines[0]
        assert result.stdout == ""


async def test_state_after_out_of_range_is_refused(
    services: Services,  # noqa: F811
    db_url: str,
) -> None:
    run = await _retried_run(services)
    result = await stepwell("replay", run, "--state-after", "6", "--database-url", db_url)
    assert result.returncode == 1
    assert result.stderr.strip() == "stepwell: --state-after must be between 0 and 5, got 6"


async def test_help_describes_replay_and_rebuild() -> None:
    replay = await stepwell("replay", "--help")
    rebuild = await stepwell("projections", "rebuild", "--help")
    assert replay.returncode == 0 and rebuild.returncode == 0
    assert "usage: stepwell replay" in replay.stdout and "--state-after" in replay.stdout
    assert "usage: stepwell projections rebuild" in rebuild.stdout
    assert "--database-url" in rebuild.stdout
