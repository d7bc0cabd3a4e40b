"""The dev UI, served by Stepwell itself at ``/``: runs, events, apps and functions.

Server-rendered Jinja templates (``templates/``) with a little vanilla JavaScript
(``static/app.js``) that refreshes each page's live region from the same URL with
``?fragment=1``; one hand-written stylesheet; no build step and no asset from elsewhere, so it
works offline.  Pages read the read side directly (``app.store.read_queries``, the registry,
traces folded from history, ``function_stats``) rather than through GraphQL, and write through
the same services the APIs use (event store, ``run_command``, ``rerun``, ``sync_url``).

Modules: ``render`` (Jinja environment, filters, responses), ``session`` (self-hosted sign-in
and the guard), ``filters`` (the runs list's query string), ``runs_data`` and ``timeline``
(what run pages show), ``actions`` (forms that write), and one handler module per area:
``runs``, ``events``, ``apps``, ``functions``, ``dead_letters``.  ``routes()`` builds the
routers the app mounts: the pages behind ``session.guard`` (which, once it lets a page through,
also reads the dead-letter count the navigation shows), and ``/ui/static``.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from app.ui import apps, dead_letters, events, functions, runs, session
from app.ui.render import STATIC_DIR, STATIC_PATH


async def before_page(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """``session.guard``, then the navigation's dead-letter count for who may see it."""
    refused = await session.guard(request)
    if refused is None and session.signed_in(request):
        await dead_letters.note_nav_count(request)
    return refused


def routes() -> list[Router]:
    """The UI's routers, built fresh for each app."""
    pages = Router(
        path="/",
        route_handlers=[
            *runs.ROUTES, *events.ROUTES, *apps.ROUTES, *functions.ROUTES, *dead_letters.ROUTES,
            *session.ROUTES,
        ],
        before_request=before_page,
        include_in_schema=False,
    )  # fmt: skip
    static = create_static_files_router(
        path=STATIC_PATH,
        directories=[STATIC_DIR],
        # URLs carry a content hash (``render.static_url``), so a year is safe.
        cache_control=CacheControlHeader(max_age=31_536_000, public=True),
        include_in_schema=False,
        name="ui-static",
    )
    return [pages, static]


__all__ = ["routes"]
