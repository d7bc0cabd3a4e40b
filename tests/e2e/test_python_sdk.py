"""The official ``inngest`` Python SDK, served by FastAPI in its own process, on Stepwell.

Each test sends an event and asserts on what a user sees through the API: the run's final
status and output, and (through the app's execution log) how often each step body ran.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.e2e.apps._log import read_log
from tests.e2e.client import Stepwell
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def executions(stack: Stack, run_id: str, step: str | None = None) -> list[dict[str, object]]:
    return [
        r
        for r in read_log(stack.log)
        if r["run_id"] == run_id and (step is None or r["step"] == step)
    ]


def test_sequential_steps_run_once_each_and_the_output_is_the_return_value(
    sw: Stepwell, py_stack: Stack
) -> None:
    event = sw.send("e2e/sequential", {"base": 0})
    run = sw.run_of(event, "e2e-py-sequential")
    assert run["status"] == "Completed"
    assert run["output"] == {"a": 1, "b": 2, "c": 20, "sum": 23}
    steps = [r["step"] for r in executions(py_stack, run["run_id"])]
    assert steps == ["a", "b", "c"]


def test_a_function_with_no_steps_completes_with_its_return_value(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/no-steps", {"name": "ada"}), "e2e-py-no-steps")
    assert run["status"] == "Completed" and run["output"] == {"hello": "ada"}


def test_a_step_that_fails_once_succeeds_on_retry(sw: Stepwell, py_stack: Stack) -> None:
    run = sw.run_of(sw.send("e2e/flaky", {"fail_times": 1}), "e2e-py-flaky")
    assert run["status"] == "Completed" and run["output"] == {"ok": True, "attempt": 1}
    assert [r["attempt"] for r in executions(py_stack, run["run_id"], "flaky-step")] == [0, 1]


def test_a_non_retriable_error_fails_the_run_without_retrying(
    sw: Stepwell, py_stack: Stack
) -> None:
    run = sw.run_of(sw.send("e2e/non-retriable"), "e2e-py-non-retriable")
    assert run["status"] == "Failed"
    assert run["output"]["message"] == "nope"
    assert len(executions(py_stack, run["run_id"], "boom")) == 1


def test_exhausted_retries_fail_the_run_and_the_on_failure_handler_runs(
    sw: Stepwell, py_stack: Stack
) -> None:
    message = f"broken-{uuid.uuid4().hex[:6]}"
    event = sw.send("e2e/always-fails", {"message": message})
    run = sw.run_of(event, "e2e-py-always-fails")
    assert run["status"] == "Failed" and message in run["output"]["message"]
    assert len(executions(py_stack, run["run_id"], "fail")) == 2  # retries=1
    # Other tests fail this function too: find the handler run that handled *this* run.
    deadline = time.monotonic() + 20
    failure: dict[str, object] = {}
    while time.monotonic() < deadline and not failure:
        for record in read_log(py_stack.log):
            if record["step"] != "on_failure":
                continue
            candidate = sw.wait_run(str(record["run_id"]))
            if candidate["output"]["original_run_id"] == run["run_id"]:
                failure = candidate
                break
        time.sleep(0.1)
    assert failure, "the onFailure handler never ran for this run"
    assert failure["status"] == "Completed"
    assert message in failure["output"]["original_error"]


def test_parallel_steps_in_wait_mode_join_before_the_next_step(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/parallel"), "e2e-py-parallel-wait")
    assert run["status"] == "Completed"
    assert run["output"] == {"results": [10, 20, 30], "after": 60}


def test_parallel_steps_in_race_mode_complete(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/parallel-race"), "e2e-py-parallel-race")
    assert run["status"] == "Completed"
    assert run["output"] == {"results": ["1ab", "2ab", "3ab"]}


def test_sleep_resumes_after_the_requested_time(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/sleep", {"seconds": 2}), "e2e-py-sleeper")
    assert run["status"] == "Completed"
    assert run["output"]["elapsed"] >= 1.9


def test_sleep_until_resumes_at_the_given_time(sw: Stepwell) -> None:
    until = time.time() + 2
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(until)) + f".{int(until % 1 * 1000):03d}Z"
    run = sw.run_of(sw.send("e2e/sleep-until", {"until": iso}), "e2e-py-sleep-until")
    assert run["status"] == "Completed"
    assert run["output"]["woke"] >= until - 0.05


def test_wait_for_event_is_matched_by_a_later_event(sw: Stepwell) -> None:
    key = uuid.uuid4().hex
    event = sw.send("e2e/wait", {"id": key, "timeout": 20})
    [run] = sw.wait_for_runs(event)
    sw.wait_run(run["run_id"], statuses={"Running"})
    time.sleep(1.0)  # let the wait be recorded
    sw.send("e2e/wait.reply", {"id": "someone-else"})
    reply = sw.send("e2e/wait.reply", {"id": key, "answer": 42})
    done = sw.wait_run(run["run_id"])
    assert done["status"] == "Completed"
    matched = done["output"]["matched"]
    assert matched["name"] == "e2e/wait.reply" and matched["data"] == {"id": key, "answer": 42}
    assert reply


def test_wait_for_event_times_out_and_ignores_events_sent_before_it(sw: Stepwell) -> None:
    key = uuid.uuid4().hex
    sw.send("e2e/wait.reply", {"id": key})  # before the wait exists: must not match
    time.sleep(0.3)
    run = sw.run_of(sw.send("e2e/wait", {"id": key, "timeout": 2}), "e2e-py-waiter")
    assert run["status"] == "Completed" and run["output"] == {"matched": None}


def test_invoke_returns_the_invoked_functions_result(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/invoke", {"n": 21}), "e2e-py-invoker")
    assert run["status"] == "Completed" and run["output"] == {"result": {"doubled": 42}}


def test_invoke_of_a_failing_function_raises_in_the_caller(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/invoke-fails"), "e2e-py-invoker-fails")
    assert run["status"] == "Completed"
    assert "invokee failed on purpose" in run["output"]["caught"]["error"]


def test_invoke_times_out_when_the_invoked_function_is_too_slow(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/invoke-timeout"), "e2e-py-invoker-timeout", timeout=40)
    assert run["status"] == "Completed"
    assert "Timed out waiting for invoked function" in run["output"]["caught"]["error"]


def test_send_event_from_a_step_triggers_another_function(sw: Stepwell) -> None:
    value = uuid.uuid4().hex
    run = sw.run_of(sw.send("e2e/send", {"value": value}), "e2e-py-sender")
    assert run["status"] == "Completed"
    [sent_id] = run["output"]["ids"]
    child = sw.run_of(sent_id, "e2e-py-on-sent")
    assert child["status"] == "Completed"
    assert child["output"] == {"from_run": run["run_id"], "value": value}


def test_a_function_with_several_triggers_runs_for_each(sw: Stepwell) -> None:
    a = sw.run_of(sw.send("e2e/multi.a", {"x": 1}), "e2e-py-multi-trigger")
    b = sw.run_of(sw.send("e2e/multi.b", {"x": 2}), "e2e-py-multi-trigger")
    assert a["output"] == {"name": "e2e/multi.a", "data": {"x": 1}}
    assert b["output"] == {"name": "e2e/multi.b", "data": {"x": 2}}


def test_wildcard_triggers_match_by_prefix(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/wild.anything"), "e2e-py-wildcard")
    assert run["output"] == {"name": "e2e/wild.anything"}


def test_expression_triggers_run_only_when_the_expression_holds(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/expr", {"plan": "pro"}), "e2e-py-expression")
    assert run["output"] == {"plan": "pro"}
    skipped = sw.send("e2e/expr", {"plan": "free"})
    time.sleep(1.5)
    assert sw.runs_for_event(skipped) == []


def test_large_state_is_fetched_by_the_sdk_through_the_api(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/big"), "e2e-py-big-state", timeout=60)
    assert run["status"] == "Completed"
    assert run["output"] == {"total": 6 * 1024 * 1024, "steps": 6}


def test_a_sleeping_run_can_be_cancelled(sw: Stepwell, py_stack: Stack) -> None:
    event = sw.send("e2e/cancellable", {"id": uuid.uuid4().hex})
    [run] = sw.wait_for_runs(event)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not executions(py_stack, run["run_id"], "a"):
        time.sleep(0.05)
    time.sleep(0.5)  # step a is recorded, the run is now asleep for 60 s
    response = sw.http.delete(f"/v1/runs/{run['run_id']}")
    assert response.status_code == 200
    done = sw.wait_run(run["run_id"], timeout=10)
    assert done["status"] == "Cancelled"
    assert executions(py_stack, run["run_id"], "b") == []


def test_invoking_an_unknown_function_raises_in_the_caller(sw: Stepwell) -> None:
    run = sw.run_of(sw.send("e2e/invoke-missing"), "e2e-py-invoker-missing")
    assert run["status"] == "Completed"
    assert "could not find function with ID: e2e-py-no-such-fn" in run["output"]["caught"]["error"]


def test_retry_after_from_the_sdk_delays_the_retry(sw: Stepwell, py_stack: Stack) -> None:
    run = sw.run_of(sw.send("e2e/retry-after", {"seconds": 2}), "e2e-py-retry-after")
    assert run["status"] == "Completed" and run["output"]["attempt"] == 1
    [first, second] = executions(py_stack, run["run_id"], "later")
    # --retry-interval is 0.5 s for the suite; the SDK asked for 2 s and wins.
    assert float(str(second["t"])) - float(str(first["t"])) >= 1.5
