"""Dead letters in a browser: the page lists them (and the navigation counts them), Retry puts
one back on the queue and its run goes on, Discard drops one, and a stuck run's page says so.

A dead letter is made as the worker makes one, on a real run: a sleeper's wake-up item (due in
an hour) is claimed ahead of time and buried under its lease.  The stack is this module's own,
so the test can reach its database.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Page, expect

from app.store import dead_letters
from app.store import queue as q
from app.store.db import connect
from app.ui.dead_letters import back_path
from domain.queue import ItemKind, ItemSpec
from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import start_py_app
from tests.ui.conftest import screenshot, start_ui_server

pytestmark = pytest.mark.e2e

REASON = "3 deliveries failed; last: lease expired: the worker holding the item stopped or stalled"


@dataclass(frozen=True)
class DeadStack:
    url: str
    db_url: str
    client: Stepwell


@pytest.fixture(scope="module")
def stack(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeadStack]:
    logs = tmp_path_factory.mktemp("ui-dead-letters")
    with cloned_database(pg_admin_url, template_db) as db_url, ExitStack() as ex:
        server = start_ui_server(ex, db_url, logs)
        _, app_url = start_py_app(ex, server.url, logs)
        client = Stepwell(server.url)
        ex.callback(client.close)
        client.sync(app_url)
        yield DeadStack(server.url, db_url, client)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on a loop of its own: Playwright's sync API owns this thread's loop."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coro)))
    thread.start()
    thread.join()
    assert result, "the coroutine failed; see the captured output"
    return result[0]


def sleeping_run(stack: DeadStack) -> str:
    """A sleeper run asleep for an hour; its id once its wake-up is the only queued item."""
    event_id = stack.client.send("e2e/sleep", {"seconds": 3600, "tag": uuid.uuid4().hex})
    [run] = stack.client.wait_for_runs(event_id)
    run_id = str(run["run_id"])
    deadline = time.monotonic() + 30
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT run_id FROM queue_items WHERE available_at > now() + interval '30 min'"
                "   AND lease_id IS NULL"
            ).fetchall()
            total = conn.execute("SELECT count(*) FROM queue_items").fetchone()
            if rows == [(run_id,)] and total == (1,):
                return run_id
            time.sleep(0.05)
    raise AssertionError(f"run {run_id} never went to sleep")


def bury_run_item(stack: DeadStack, run_id: str) -> int:
    """Claim the sleeping run's wake-up ahead of time (two hours on) and bury it."""
    return int(run_async(_bury_run(stack.db_url, run_id)))


async def _bury_run(db_url: str, run_id: str) -> int:
    conn = await connect(db_url)
    try:
        claimed = await q.claim_due_items(conn, 10, 60_000, int(time.time() * 1000) + 7_200_000)
        assert [c.run_id for c in claimed] == [run_id], claimed
        assert await dead_letters.bury(conn, claimed[0], 3, REASON)
        return claimed[0].id
    finally:
        await conn.close()


async def _bury_orphan(db_url: str, job_id: str) -> int:
    """A run-less dead letter (a cron tick, say) due in a day, so no worker claims it first."""
    at = int(time.time() * 1000) + 86_400_000
    conn = await connect(db_url)
    try:
        spec = ItemSpec(kind=ItemKind.CRON, job_id=job_id, available_at=at, payload={"x": 1})
        await q.enqueue_items(conn, [spec], at)
        [item] = await q.claim_due_items(conn, 10, 60_000, at)
        assert await dead_letters.bury(conn, item, 5, f"5 deliveries failed; last: {job_id}")
        return item.id
    finally:
        await conn.close()


def test_the_page_lists_dead_letters_and_retry_lets_the_run_go_on(
    stack: DeadStack, page: Page, artifacts: Path
) -> None:
    run_id = sleeping_run(stack)
    dead = bury_run_item(stack, run_id)
    orphan = run_async(_bury_orphan(stack.db_url, f"cron-{uuid.uuid4().hex}"))

    page.goto(f"{stack.url}/dead-letters")
    expect(page.locator("nav.nav a[href='/dead-letters']")).to_have_text("Dead letters (2)")
    row = page.locator(f"tr[data-dead-letter='{dead}']")
    expect(row.locator("a[href='/runs/" + run_id + "']")).to_have_text(run_id)
    expect(row).to_contain_text("sleeper")
    expect(row.locator("td.num")).to_have_text("3")
    expect(row.locator(".sync-error")).to_have_text(REASON)
    expect(row.locator("time")).to_be_visible()
    expect(page.locator(f"tr[data-dead-letter='{orphan}']")).to_contain_text("cron")
    # Newest first.
    ids = page.locator("tr[data-dead-letter]").evaluate_all(
        "rs => rs.map(r => Number(r.dataset.deadLetter))"
    )
    assert ids == [orphan, dead]
    screenshot(page, artifacts, "dead-letters")

    row.locator("[data-action=retry]").click()
    expect(page.locator(".banner-ok")).to_have_text(
        f"Dead letter {dead} is back on the queue, due now."
    )
    expect(page.locator(f"tr[data-dead-letter='{dead}']")).to_have_count(0)
    expect(page.locator("nav.nav a[href='/dead-letters']")).to_have_text("Dead letters (1)")
    # Back on the queue, due now: the worker wakes the run, which finishes.
    assert stack.client.wait_run(run_id)["status"] == "Completed"

    page.locator(f"tr[data-dead-letter='{orphan}'] [data-action=discard]").click()
    expect(page.locator(".banner-ok")).to_have_text(f"Discarded dead letter {orphan}.")
    expect(page.locator("tr.empty")).to_contain_text("No dead letters")
    expect(page.locator("nav.nav a[href='/dead-letters']")).to_have_text("Dead letters")


def test_a_stuck_run_shows_a_banner_and_retries_from_it(
    stack: DeadStack, page: Page, artifacts: Path
) -> None:
    run_id = sleeping_run(stack)
    dead = bury_run_item(stack, run_id)

    page.goto(f"{stack.url}/runs/{run_id}")
    banner = page.locator(f".banner-stuck[data-dead-letter='{dead}']")
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_contain_text(
        re.compile(r"This run is stuck: its \S+ item failed 3 times and was set aside: ")
    )
    expect(banner.locator(".stuck-reason")).to_have_text(REASON)
    screenshot(page, artifacts, "run-stuck")

    banner.get_by_role("link", name="Dead letters").click()
    expect(page).to_have_url(f"{stack.url}/dead-letters?run_id={run_id}")
    expect(page.locator("tr[data-dead-letter]")).to_have_count(1)
    page.go_back()

    banner.locator("[data-action=retry-dead-letter]").click()
    expect(page).to_have_url(re.compile(rf"/runs/{run_id}\?notice="))
    expect(page.locator(".banner-ok")).to_contain_text("back on the queue")
    expect(page.locator(".banner-stuck")).to_have_count(0)
    expect(page.locator(".run-status .chip")).to_have_text("Completed", timeout=30_000)


def test_a_bad_cursor_or_run_id_redirects_with_an_error(stack: DeadStack, page: Page) -> None:
    page.goto(f"{stack.url}/dead-letters?before=abc")
    expect(page.locator(".banner-err")).to_have_text("The page cursor is not valid.")
    page.goto(f"{stack.url}/dead-letters?run_id=nope")
    expect(page.locator(".banner-err")).to_contain_text("is not a run id")
    page.goto(f"{stack.url}/dead-letters?run_id={'0' * 26}")
    expect(page.locator("tr.empty")).to_have_text("This run has no dead letters.")


def test_forms_return_only_to_this_page_or_a_run_page() -> None:
    run = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
    assert back_path(f"/runs/{run}") == f"/runs/{run}"
    assert back_path("/dead-letters?before=12") == "/dead-letters?before=12"
    for elsewhere in ("", "https://evil.example", "//evil.example", "/runs/x", "/dead-lettersX"):
        assert back_path(elsewhere) == "/dead-letters", elsewhere
