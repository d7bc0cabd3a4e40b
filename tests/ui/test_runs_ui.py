"""The runs list and the run page, in a browser: live updates, timeline, cancel, rerun, errors."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.apps._log import read_log
from tests.e2e.conftest import Stack
from tests.ui.conftest import screenshot

pytestmark = pytest.mark.e2e


def _run_id(stack: Stack, event_id: str) -> str:
    [run] = stack.client.wait_for_runs(event_id)
    return str(run["run_id"])


def test_runs_list_shows_a_run_appear_and_finish_without_a_reload(
    ui_stack: Stack, page: Page, artifacts: Path
) -> None:
    page.goto(f"{ui_stack.server.url}/runs?range=1h")
    page.evaluate("window.__sameDocument = true")
    event_id = ui_stack.client.send("e2e/sleep", {"seconds": 3, "tag": uuid.uuid4().hex})
    run_id = _run_id(ui_stack, event_id)
    row = page.locator(f"tr[data-run-id='{run_id}']")
    expect(row).to_be_visible()
    expect(row).to_have_attribute("data-status", "Running")
    expect(row).to_have_attribute("data-status", "Completed", timeout=30_000)
    expect(row.locator(".chip")).to_have_text("Completed")
    # The row came and finished by the page's own polling: the document is the same one.
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, artifacts, "runs-list")


def test_runs_list_filters_on_the_server_and_pages_with_a_cursor(
    ui_stack: Stack, page: Page
) -> None:
    events = [{"name": "e2e/no-steps", "data": {"name": f"page-{i}"}} for i in range(55)]
    response = ui_stack.client.http.post(f"/e/{ui_stack.client.event_key}", json=events)
    assert response.status_code == 200, response.text
    runs = {_run_id(ui_stack, e) for e in response.json()["ids"]}
    for run_id in runs:
        ui_stack.client.wait_run(run_id)
    fn_id = ui_stack.client.functions("e2e-py")["e2e-py-no-steps"]
    page.goto(f"{ui_stack.server.url}/runs?function={fn_id}&range=1h")
    rows = page.locator("tbody tr[data-run-id]")
    expect(rows).to_have_count(50)  # one page, read on the server
    first = set(rows.evaluate_all("rs => rs.map(r => r.dataset.runId)"))
    page.locator("a[rel=next]").click()
    expect(page).to_have_url(re.compile(r"after="))
    expect(rows.first).to_be_visible()
    second = set(rows.evaluate_all("rs => rs.map(r => r.dataset.runId)"))
    assert not first & second and runs <= first | second
    expect(page.locator("a[rel=next]")).to_have_count(0)

    page.goto(f"{ui_stack.server.url}/runs?function={fn_id}&range=1h")
    page.locator("label.toggle", has_text="Failed").click()  # a filter submits itself
    expect(page).to_have_url(re.compile(r"status=Failed"))
    expect(page.locator("tr.empty")).to_be_visible()
    page.locator("label.toggle", has_text="Completed").click()
    expect(page).to_have_url(re.compile(r"status=Completed"))
    expect(rows).to_have_count(50)
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.status)")) == {"Completed"}


def test_run_page_timeline_shows_each_step_with_its_output(
    ui_stack: Stack, page: Page, artifacts: Path
) -> None:
    run_id = _run_id(ui_stack, ui_stack.client.send("e2e/sequential", {"base": 1}))
    ui_stack.client.wait_run(run_id)
    page.goto(f"{ui_stack.server.url}/runs/{run_id}")
    expect(page.locator(".run-status .chip")).to_have_text("Completed")
    output = json.loads(page.locator("[data-run-output] pre").inner_text())
    assert output == {"a": 2, "b": 3, "c": 30, "sum": 35}
    for step, value in (("a", 2), ("b", 3), ("c", 30)):
        row = page.locator(f"details.tl-row[data-step='{step}']")
        expect(row).to_have_attribute("data-status", "Completed")
        expect(row.locator(".op")).to_have_text("step.run")
        row.locator("summary").click()
        assert json.loads(row.locator(".tl-body pre.json").inner_text()) == value
    screenshot(page, artifacts, "run-page")


def test_run_page_follows_a_running_run_live(ui_stack: Stack, page: Page) -> None:
    run_id = _run_id(ui_stack, ui_stack.client.send("e2e/sleep", {"seconds": 2}))
    page.goto(f"{ui_stack.server.url}/runs/{run_id}")
    page.evaluate("window.__sameDocument = true")
    nap = page.locator("details.tl-row[data-step='nap']")
    expect(nap).to_have_attribute("data-status", "Waiting")
    expect(nap.locator(".op")).to_have_text("sleep")
    nap.locator("summary").click()  # stays open across refreshes
    expect(page.locator(".run-status .chip")).to_have_text("Completed", timeout=30_000)
    expect(nap).to_have_attribute("data-status", "Completed")
    expect(page.locator("details.tl-row[data-step='b']")).to_have_attribute(
        "data-status", "Completed"
    )
    expect(nap).to_have_attribute("open", "")
    assert page.evaluate("window.__sameDocument") is True


def test_a_failed_run_shows_its_error_and_stack(
    ui_stack: Stack, page: Page, artifacts: Path
) -> None:
    message = f"ui boom {uuid.uuid4().hex[:6]}"
    run_id = _run_id(ui_stack, ui_stack.client.send("e2e/always-fails", {"message": message}))
    assert ui_stack.client.wait_run(run_id)["status"] == "Failed"
    page.goto(f"{ui_stack.server.url}/runs/{run_id}")
    error = page.locator("[data-run-output]")
    expect(error.locator("h2")).to_have_text("Error")
    expect(error.locator(".error-name")).to_have_text("RuntimeError")
    expect(error.locator(".error-message")).to_have_text(message)
    expect(error.locator("pre.stack")).to_contain_text("Traceback")
    step = page.locator("details.tl-row[data-step='fail']")
    expect(step).to_have_attribute("data-status", "Failed")
    expect(step.locator(".attempts")).to_have_text("2 attempts")  # retries=1
    step.locator("summary").click()
    expect(step.locator(".error-message")).to_have_text(message)
    expect(step.locator("pre.stack")).to_contain_text(f"RuntimeError: {message}")
    attempts = page.locator("details.tl-row.kind-attempt[data-step^='Attempt']")
    expect(attempts.first).to_be_visible()
    screenshot(page, artifacts, "run-failed")


def test_cancel_from_the_run_page(ui_stack: Stack, page: Page) -> None:
    run_id = _run_id(ui_stack, ui_stack.client.send("e2e/cancellable", {"id": uuid.uuid4().hex}))
    page.goto(f"{ui_stack.server.url}/runs/{run_id}")
    expect(page.locator("details.tl-row[data-step='long-nap']")).to_have_attribute(
        "data-status", "Waiting"
    )
    page.locator("[data-action=cancel]").click()
    expect(page.locator(".banner-ok")).to_have_text("Cancellation requested.")
    expect(page.locator(".run-status .chip")).to_have_text("Cancelled")
    expect(page.locator("[data-action=cancel]")).to_have_count(0)
    assert ui_stack.client.run(run_id)["status"] == "Cancelled"


def test_rerun_and_rerun_from_a_chosen_step(ui_stack: Stack, page: Page) -> None:
    run_id = _run_id(ui_stack, ui_stack.client.send("e2e/sequential", {"base": 5}))
    ui_stack.client.wait_run(run_id)
    page.goto(f"{ui_stack.server.url}/runs/{run_id}")
    page.locator("[data-action=rerun]").click()
    expect(page).not_to_have_url(f"{ui_stack.server.url}/runs/{run_id}")
    rerun_id = page.url.split("/runs/")[1].split("?")[0]
    expect(page.locator(".run-status .chip")).to_have_text("Completed", timeout=30_000)
    expect(page.locator("dd a", has_text=run_id)).to_be_visible()  # "Rerun of"
    assert json.loads(page.locator("[data-run-output] pre").inner_text())["sum"] == 6 + 7 + 70

    page.goto(f"{ui_stack.server.url}/runs/{run_id}")
    step_c = page.locator("details.tl-row[data-step='c']")
    step_c.locator("summary").click()
    step_c.locator("[data-action=rerun-from-here]").click()
    expect(page.locator(".banner-ok")).to_contain_text("from step")
    from_c = page.url.split("/runs/")[1].split("?")[0]
    expect(page.locator(".run-status .chip")).to_have_text("Completed", timeout=30_000)
    executed = {(r["run_id"], r["step"]) for r in read_log(ui_stack.log)}
    assert {s for r, s in executed if r == rerun_id} == {"a", "b", "c"}
    # From "c": a and b are replayed from memos, only c runs again.
    assert {s for r, s in executed if r == from_c} == {"c"}
