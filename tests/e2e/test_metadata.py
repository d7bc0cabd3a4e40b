"""Run and step metadata with the official TypeScript SDK (``metadataMiddleware``).

Inside a ``step.run`` the SDK attaches ``inngest.metadata.set()`` to the step's op; outside
any step it posts to ``POST /v1/runs/{id}/metadata``.  Either way the update is recorded in
the run's history and GraphQL shows it on the span it targets, one entry per kind: a step's
on the step, a failed attempt's on that attempt, a run-scoped one on the run.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import node_stack

pytestmark = pytest.mark.e2e

SPAN = "name stepID metadata { scope kind values updatedAt }"
TRACE = f"""query($id: String!) {{ runTrace(runID: $id) {{ {SPAN}
  childrenSpans {{ {SPAN} childrenSpans {{ {SPAN} }} }} }} }}"""


@pytest.fixture(scope="module")
def sw(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stepwell]:
    logs = tmp_path_factory.mktemp("metadata")
    with (
        cloned_database(pg_admin_url, template_db) as db,
        node_stack(db, logs, "metadata.mjs", "e2e-metadata") as client,
    ):
        yield client


def _trace(sw: Stepwell, run_id: str) -> dict[str, Any]:
    response = sw.http.post("/v0/gql", json={"query": TRACE, "variables": {"id": run_id}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    trace: dict[str, Any] = body["data"]["runTrace"]
    return trace


def _shown(span: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Kind -> (scope, values) of a span's metadata; each kind appears once."""
    kinds = [m["kind"] for m in span["metadata"]]
    assert len(kinds) == len(set(kinds)), span["metadata"]
    assert all(m["updatedAt"].endswith("Z") for m in span["metadata"])
    return {m["kind"]: (m["scope"], m["values"]) for m in span["metadata"]}


def _hashed(step_id: str) -> str:
    return hashlib.sha1(step_id.encode()).hexdigest()


def test_metadata_set_in_and_outside_steps_shows_on_the_trace(sw: Stepwell) -> None:
    source = uuid.uuid4().hex
    run = sw.run_of(sw.send("e2e/metadata", {"source": source}), "e2e-metadata-annotated")
    assert (run["status"], run["output"]) == ("Completed", {"rows": 3}), run
    trace = _trace(sw, run["run_id"])

    # Run scope: step.metadata() rode on its step's op; the last one came through the API.
    assert _shown(trace) == {
        "userland.progress": ("run", {"stage": "done"}),
        "userland.summary": ("run", {"rows": 3}),
    }
    steps = {s["stepID"]: s for s in trace["childrenSpans"] if s["stepID"]}
    # On the step: set inside it (op), and updated from outside it (API, step "work").
    assert _shown(steps[_hashed("work")]) == {
        "userland.import": ("step", {"rows": 3, "source": source}),
        "userland.review": ("step", {"checked": True}),
    }
    flaky = steps[_hashed("flaky")]
    assert _shown(flaky) == {"userland.tries": ("step", {"try": 1})}
    attempts = {a["name"]: a for a in flaky["childrenSpans"]}
    assert _shown(attempts["Attempt 0"]) == {"userland.tries": ("step", {"try": 0})}
    assert _shown(steps[_hashed("note")]) == {}


def test_the_run_page_shows_a_steps_metadata(sw: Stepwell) -> None:
    source = uuid.uuid4().hex
    run = sw.run_of(sw.send("e2e/metadata", {"source": source}), "e2e-metadata-annotated")
    page = sw.http.get(f"/runs/{run['run_id']}")
    assert page.status_code == 200
    work = page.text.split('data-step="work"', 1)[1].split("</details>", 1)[0]
    assert 'data-metadata-kind="userland.import"' in work and source in work
    assert 'data-metadata-kind="userland.review"' in work
