"""Self-hosted (``stepwell start``): the UI asks for the signing key and keeps a session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from app.drivers.signing import hashed_signing_key
from app.ui.session import COOKIE
from tests.conftest import cloned_database
from tests.e2e.conftest import EVENT_KEY, SIGNING_KEY
from tests.processes import Proc
from tests.ui.conftest import VIEWPORT, screenshot, start_ui_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hosted(
    pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    logs = tmp_path_factory.mktemp("ui-hosted")
    with cloned_database(pg_admin_url, template_db) as url, ExitStack() as ex:
        yield start_ui_server(
            ex, url, logs, "--signing-key", SIGNING_KEY, "--event-key", EVENT_KEY, mode="start"
        )


def test_pages_and_fragments_need_a_session(hosted: Proc) -> None:
    with httpx.Client(base_url=hosted.url) as http:
        page = http.get("/runs?range=1h")
        assert page.status_code == 303
        assert page.headers["location"] == "/signin?next=%2Fruns%3Frange%3D1h"
        assert http.get("/runs?fragment=1").status_code == 401
        assert http.post("/events/send", data={"name": "x", "data": "{}"}).status_code == 401
        forged = {"Cookie": f"{COOKIE}=v1.9999999999.00"}
        assert http.get("/runs", headers=forged).status_code == 303
        assert http.get("/ui/static/app.css").status_code == 200  # assets are public
        # The API's bearer check is unchanged: the UI session is not a way around it.
        assert http.get("/v1/events").status_code == 401


def test_sign_in_with_the_signing_key_sets_a_strict_http_only_session(
    hosted: Proc, browser: Browser, artifacts: Path
) -> None:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        page.goto(f"{hosted.url}/events")
        expect(page).to_have_url(re.compile(r"/signin\?next="))
        screenshot(page, artifacts, "signin")
        page.locator("input[name=key]").fill("signkey-test-00000000")
        page.locator("button[type=submit]").click()
        expect(page.locator(".banner-err")).to_contain_text("not this server's signing key")
        page.locator("input[name=key]").fill(SIGNING_KEY)
        page.locator("button[type=submit]").click()
        expect(page).to_have_url(f"{hosted.url}/events")
        expect(page.locator("h1")).to_have_text("Events")
        [cookie] = [c for c in context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert SIGNING_KEY.removeprefix("signkey-test-") not in cookie["value"]
        # The live regions authenticate with the same session.
        fragment = page.request.get(f"{hosted.url}/runs?fragment=1")
        assert fragment.status == 200
        page.locator("button", has_text="Sign out").click()
        expect(page).to_have_url(re.compile(r"/signin"))
        assert not [c for c in context.cookies() if c["name"] == COOKIE]
    finally:
        context.close()


def test_the_hashed_key_signs_in_too_and_cross_site_posts_are_refused(hosted: Proc) -> None:
    with httpx.Client(base_url=hosted.url) as http:
        signed = http.post(
            "/signin", data={"key": hashed_signing_key(SIGNING_KEY), "next": "/apps"}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/apps"
        assert http.get("/apps").status_code == 200
        cross = http.post(
            "/events/send",
            data={"name": "x/y", "data": "{}"},
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        # An off-site ``next`` is never followed.
        bounced = http.post("/signin", data={"key": SIGNING_KEY, "next": "//evil.example/"})
        assert bounced.headers["location"] == "/"
