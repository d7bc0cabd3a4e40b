"""Browser tests of the dev UI: a real Stepwell server, the real SDK app, and Chromium.

Chromium is Debian's (``/usr/bin/chromium``) driven by the ``playwright`` package; no browser
is ever downloaded.  The server is the real ``python -m app dev|start`` process (the UI is
mounted by ``create_app``).  Screenshots of the main pages go to ``test-artifacts/ui/``
(gitignored).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import cloned_database
from tests.e2e.client import Stepwell
from tests.e2e.conftest import Stack, start_py_app
from tests.processes import ROOT, Proc, free_port, spawn

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # the test extra is not installed: keep the browser-free tests
    collect_ignore_glob = ["test_*_ui.py"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts" / "ui"
VIEWPORT = {"width": 1400, "height": 900}


def start_ui_server(
    ex: ExitStack, db_url: str, logs: Path, *extra: str, mode: str = "dev", name: str = "server"
) -> Proc:
    """``python -m app <mode>`` with the e2e servers' flags."""
    port = free_port()
    args = [
        sys.executable, "-m", "app", mode, "--database-url", db_url,
        "--port", str(port), "--no-discovery", "--no-poll", "--retry-interval", "0.5", *extra,
    ]  # fmt: skip
    return ex.enter_context(spawn(args, port=port, log=logs / f"{name}.log"))


@pytest.fixture(scope="session")
def ui_stack(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("ui-stack")
    with cloned_database(pg_admin_url, template_db) as url, ExitStack() as ex:
        server = start_ui_server(ex, url, logs)
        app, app_url = start_py_app(ex, server.url, logs)
        client = Stepwell(server.url)
        ex.callback(client.close)
        client.sync(app_url)
        yield Stack(server, app, client, logs / "steps.jsonl", app_url)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    opened = context.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())  # the UI confirms destructive actions
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def screenshot(page: Page, artifacts: Path, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # a sticky header is drawn where the view is
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
