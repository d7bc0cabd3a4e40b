"""The official ``inngest`` npm package (TypeScript SDK v4 on Node) on Stepwell."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import node_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stepwell]:
    logs = tmp_path_factory.mktemp("node")
    with (
        cloned_database(pg_admin_url, template_db) as db,
        node_stack(db, logs, "app.mjs", "e2e-node") as client,
    ):
        yield client


def test_node_sequential_steps(node: Stepwell) -> None:
    run = node.run_of(node.send("e2e/node.steps", {"base": 1}), "e2e-node-steps")
    assert run["status"] == "Completed"
    assert run["output"] == {"a": 2, "b": 3, "c": 30, "sum": 35}


def test_node_sleep(node: Stepwell) -> None:
    run = node.run_of(node.send("e2e/node.sleep", {"seconds": 1}), "e2e-node-sleeper")
    assert run["status"] == "Completed" and run["output"]["elapsed"] >= 0.9


@pytest.mark.parametrize("use_match", [False, True])
def test_node_wait_for_event_matches_with_if_and_with_match(
    node: Stepwell, use_match: bool
) -> None:
    key = uuid.uuid4().hex
    event = node.send("e2e/node.wait", {"id": key, "timeout": 20, "use_match": use_match})
    [run] = node.wait_for_runs(event)
    node.wait_run(run["run_id"], statuses={"Running"})
    time.sleep(1)
    node.send("e2e/node.wait.reply", {"id": key, "n": 7})
    done = node.wait_run(run["run_id"])
    assert done["status"] == "Completed"
    assert done["output"]["matched"]["data"] == {"id": key, "n": 7}


def test_node_wait_for_event_times_out_with_null(node: Stepwell) -> None:
    run = node.run_of(node.send("e2e/node.wait", {"id": "nobody", "timeout": 1}), "e2e-node-waiter")
    assert run["status"] == "Completed" and run["output"] == {"matched": None}


def test_node_invoke(node: Stepwell) -> None:
    run = node.run_of(node.send("e2e/node.invoke", {"n": 4}), "e2e-node-invoker")
    assert run["status"] == "Completed" and run["output"] == {"result": {"doubled": 8}}


def test_node_parallel_steps_and_retries(node: Stepwell) -> None:
    run = node.run_of(node.send("e2e/node.parallel"), "e2e-node-parallel")
    assert run["output"] == {"results": [10, 20, 30], "after": 60}
    flaky = node.run_of(node.send("e2e/node.flaky"), "e2e-node-flaky")
    assert flaky["status"] == "Completed"
