"""``defer()`` (opcodes DeferAdd, DeferAbort) with the official TypeScript SDK.

A defer asks for a run of a companion function (``createDefer``) once the parent run has
ended; Stepwell records it in the run's history, tells the SDK about it on every later call
(``defers``) so it is not reported again, and when the run ends emits one
``inngest/deferred.schedule`` event per defer still due, with an id derived from (run, defer).
An aborted defer never runs; one the server rejects (its input is not an object) is dropped
without failing the run.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator

import pytest

from domain.ids import deterministic_ulid, ulid_ms
from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import node_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sw(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stepwell]:
    logs = tmp_path_factory.mktemp("defers")
    with (
        cloned_database(pg_admin_url, template_db) as db,
        node_stack(db, logs, "defers.mjs", "e2e-defers") as client,
    ):
        yield client


def _defer_event_id(run_id: str, defer_id: str) -> str:
    hashed = hashlib.sha1(defer_id.encode()).hexdigest()  # the SDK's step id hash
    return deterministic_ulid(ulid_ms(run_id), f"defer-event:{run_id}:{hashed}")


def _runs_of(sw: Stepwell, event_id: str, settle: float = 0) -> list[dict]:
    if settle:
        time.sleep(settle)
    return sw.runs_for_event(event_id)


@pytest.mark.parametrize("fail", [False, True])
def test_a_defer_runs_its_function_after_the_parent_ends(sw: Stepwell, fail: bool) -> None:
    to = uuid.uuid4().hex
    parent = sw.run_of(sw.send("e2e/defer.parent", {"to": to, "fail": fail}), "e2e-defers-parent")
    assert parent["status"] == ("Failed" if fail else "Completed"), parent
    if not fail:
        assert parent["output"] == {"n": 42}
    run_id = parent["run_id"]
    [child] = sw.wait_for_runs(_defer_event_id(run_id, "kept"))
    done = sw.wait_run(child["run_id"])
    assert done["status"] == "Completed", done
    assert done["output"] == {
        "got": {"to": to},
        "parent": {"fnSlug": "e2e-defers-parent", "runId": run_id},
    }
    # The aborted and the rejected defers never become events, so never runs.
    for defer_id in ("dropped", "rejected"):
        assert _runs_of(sw, _defer_event_id(run_id, defer_id), settle=0.5) == []
    # The run page lists each defer with what became of it.
    page = sw.http.get(f"/runs/{run_id}").text
    event_id = _defer_event_id(run_id, "kept")
    assert f'href="/events/{event_id}"' in page
    assert 'data-defer="rejected"' in page and "invalid_input" in page
    assert 'data-defer="dropped"' not in page  # aborted before it was ever reported
    functions = sw.functions("e2e-defers")
    follow_up = [r for r in sw.runs_for_event(_defer_event_id(run_id, "kept"))]
    assert [r["function_id"] for r in follow_up] == [functions["e2e-defers-follow-up"]]
