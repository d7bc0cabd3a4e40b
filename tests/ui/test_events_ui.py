"""Events in a browser: the live stream, an event's page, sending and replaying events."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Stack
from tests.ui.conftest import screenshot

pytestmark = pytest.mark.e2e


def test_the_event_stream_shows_new_events_and_their_runs_live(
    ui_stack: Stack, page: Page, artifacts: Path
) -> None:
    page.goto(f"{ui_stack.server.url}/events")
    page.evaluate("window.__sameDocument = true")
    event_id = ui_stack.client.send("e2e/no-steps", {"name": "stream"})
    row = page.locator(f"tr[data-event-id='{event_id}']")
    expect(row.locator(".event-name")).to_have_text("e2e/no-steps")
    expect(row.locator(".run-chip .chip")).to_have_text("Completed")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, artifacts, "events")


def test_sending_an_event_from_the_ui_starts_a_run(
    ui_stack: Stack, page: Page, artifacts: Path
) -> None:
    page.goto(f"{ui_stack.server.url}/events")
    page.locator("a", has_text="Send event").click()
    page.locator("input[name=name]").fill("e2e/no-steps")
    editor = page.locator("textarea[name=data]")
    editor.fill('{"name": ')
    expect(page.locator("[data-json-status]")).to_contain_text("Invalid JSON")
    expect(page.locator("[data-action=send]")).to_be_disabled()
    editor.fill('["not", "an object"]')
    expect(page.locator("[data-json-status]")).to_contain_text("Must be a JSON object")
    editor.fill('{"name": "from the UI"}')
    expect(page.locator("[data-action=send]")).to_be_enabled()
    page.locator("[data-action=send]").click()
    expect(page.locator(".banner-ok")).to_have_text("Event sent.")
    event_id = page.url.split("/events/")[1].split("?")[0]
    payload = json.loads(page.locator(".code-block pre").first.inner_text())
    assert payload["name"] == "e2e/no-steps" and payload["data"] == {"name": "from the UI"}
    run = page.locator("tr[data-run-id]")
    expect(run).to_have_attribute("data-status", "Completed", timeout=30_000)
    run_id = run.get_attribute("data-run-id")
    screenshot(page, artifacts, "event-page")
    assert ui_stack.client.run(str(run_id))["output"] == {"hello": "from the UI"}
    assert [r["run_id"] for r in ui_stack.client.runs_for_event(event_id)] == [run_id]


def test_the_server_refuses_an_event_the_api_would_refuse(ui_stack: Stack, page: Page) -> None:
    page.goto(f"{ui_stack.server.url}/events/send")
    page.locator("input[name=name]").fill("inngest/reserved")
    page.locator("textarea[name=data]").fill("{}")
    page.locator("[data-action=send]").click()
    expect(page.locator("[data-form-error]")).to_contain_text("reserved")
    expect(page.locator("input[name=name]")).to_have_value("inngest/reserved")


def test_replay_an_event_as_is_and_edited(ui_stack: Stack, page: Page) -> None:
    tag = uuid.uuid4().hex[:8]
    original = ui_stack.client.send("e2e/no-steps", {"name": tag})
    ui_stack.client.wait_for_runs(original)
    page.goto(f"{ui_stack.server.url}/events/{original}")
    page.locator("[data-action=replay]").click()
    expect(page.locator(".banner-ok")).to_contain_text(f"Replayed {original}")
    replayed = page.url.split("/events/")[1].split("?")[0]
    assert replayed != original
    expect(page.locator("tr[data-run-id]")).to_have_attribute("data-status", "Completed")

    page.goto(f"{ui_stack.server.url}/events/{original}")
    page.locator("[data-action=edit-replay]").click()
    expect(page.locator("input[name=name]")).to_have_value("e2e/no-steps")
    assert json.loads(page.locator("textarea[name=data]").input_value()) == {"name": tag}
    page.locator("textarea[name=data]").fill(json.dumps({"name": f"{tag}-edited"}))
    page.locator("[data-action=send]").click()
    run = page.locator("tr[data-run-id]")
    expect(run).to_have_attribute("data-status", "Completed", timeout=30_000)
    output = ui_stack.client.run(str(run.get_attribute("data-run-id")))["output"]
    assert output == {"hello": f"{tag}-edited"}
