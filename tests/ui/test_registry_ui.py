"""Apps and functions in a browser: sync state, add/resync/remove, configs, counts, invoke."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Stack
from tests.ui.conftest import screenshot

pytestmark = pytest.mark.e2e


def test_apps_page_shows_the_synced_app_and_manages_apps(
    ui_stack: Stack, page: Page, artifacts: Path
) -> None:
    page.goto(f"{ui_stack.server.url}/apps")
    app = page.locator("tr[data-app='e2e-py']")
    expect(app).to_contain_text(ui_stack.app_url)
    expect(app).to_contain_text("py")
    expect(app).to_contain_text("fast_api")
    expect(app.locator(".chip")).to_have_text("Synced")
    assert int(app.locator("td.num").inner_text()) >= 25
    screenshot(page, artifacts, "apps")

    app.locator("[data-action=resync]").click()
    expect(page.locator(".banner-ok")).to_have_text("Resynced e2e-py.")

    bad = "http://127.0.0.1:9/api/inngest"
    page.locator("input[name=url]").fill(bad)
    page.locator("[data-action=add-app]").click()
    expect(page.locator(".banner-err")).to_contain_text("failed")
    placeholder = page.locator("tr", has_text=bad)
    expect(placeholder.locator(".chip")).to_have_text("Error")
    expect(placeholder.locator(".sync-error")).not_to_be_empty()
    placeholder.locator("[data-action=remove]").click()
    expect(page.locator(".banner-ok")).to_contain_text("Removed")
    expect(page.locator("tr", has_text=bad)).to_have_count(0)
    expect(page.locator("tr[data-app='e2e-py']")).to_be_visible()


def test_functions_list_shows_triggers_and_flow_control(
    ui_stack: Stack, page: Page, artifacts: Path
) -> None:
    page.goto(f"{ui_stack.server.url}/functions")
    flaky = page.locator("tr[data-function='e2e-py-flaky']")
    expect(flaky.locator(".pill")).to_have_text("e2e/flaky")
    expect(flaky.locator(".flow")).to_contain_text("retries 2")
    cancellable = page.locator("tr[data-function='e2e-py-cancellable']")
    expect(cancellable.locator(".flow")).to_contain_text("cancel on e2e/cancel if")
    expression = page.locator("tr[data-function='e2e-py-expression']")
    expect(expression.locator(".pill")).to_contain_text("if event.data.plan == 'pro'")
    screenshot(page, artifacts, "functions")


def test_function_page_invokes_with_a_payload_and_counts_runs(
    ui_stack: Stack, page: Page, artifacts: Path
) -> None:
    page.goto(f"{ui_stack.server.url}/functions/e2e-py-no-steps")
    expect(page.locator("h1")).to_have_text("no-steps")
    expect(page.locator(".config")).to_contain_text("e2e/no-steps")
    page.locator("textarea[name=payload]").fill('{"name": "invoked"}')
    page.locator("[data-action=invoke]").click()
    expect(page.locator(".banner-ok")).to_contain_text("Invoked")
    run = page.locator("tr[data-run-id]")
    expect(run).to_have_attribute("data-status", "Completed", timeout=30_000)
    assert ui_stack.client.run(str(run.get_attribute("data-run-id")))["output"] == {
        "hello": "invoked"
    }
    page.goto(f"{ui_stack.server.url}/functions/e2e-py-no-steps")
    # Counts come from the stats projection, a poll or so behind: the page refreshes them.
    started = page.locator("tr[data-window='All time'] [data-stat=started]")
    expect(started).not_to_have_text("0", timeout=30_000)
    expect(page.locator("tr[data-run-id]").first).to_be_visible()
    screenshot(page, artifacts, "function-page")


def test_invoke_refuses_a_payload_that_is_not_an_object(ui_stack: Stack, page: Page) -> None:
    page.goto(f"{ui_stack.server.url}/functions/e2e-py-no-steps")
    # Bypass the browser-side check to see the server's answer.
    page.evaluate(
        "document.querySelector('textarea[name=payload]').value = '[1, 2]';"
        "document.querySelector('form[data-json-form]').submit()"
    )
    expect(page.locator("[data-form-error]")).to_contain_text("must be a JSON object")
    assert json.loads(page.locator("textarea[name=payload]").input_value()) == [1, 2]
