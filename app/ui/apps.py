"""The apps page: synced apps with their SDK, URL, function count, last sync and sync error;
add one by URL, resync, remove.

Adding and resyncing are ``registry.sync.sync_url`` — the same PUT-and-register the GraphQL
``createApp`` mutation and the poller use — so an app added here behaves exactly like one
added by ``-u`` or by its SDK.  Removing deletes the app with its functions (their runs stay).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from app.registry import store as registry
from app.registry.sync import sync_url
from app.ui.render import page, redirect, services_of


def with_scheme(url: str) -> str:
    # As the GraphQL createApp: an address typed without a scheme is a local http app.
    return url if "://" in url else f"http://{url}"


@get("/apps", name="ui-apps")
async def apps_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Every synced app (and URLs that failed to sync), refreshing."""
    async with services_of(request).read_db.connection() as conn:
        apps = await registry.list_apps(conn)
    return page(request, "apps.html", fragment="_apps_table.html", apps=apps)


@post("/apps", status_code=303)
async def add_app(request: Request[Any, Any, Any]) -> Response[Any]:
    """Sync the app served at the form's URL."""
    url = str((await request.form()).get("url") or "").strip()
    if not url:
        return redirect("/apps", error="Enter the URL the app serves Inngest on.")
    outcome = await sync_url(services_of(request), with_scheme(url))
    if outcome.error is not None:
        return redirect("/apps", error=f"Sync of {outcome.url} failed: {outcome.error}")
    return redirect("/apps", notice=f"Synced {outcome.url}.")


@post("/apps/{app_id:str}/sync", status_code=303)
async def resync_app(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
    """Sync an app again from its URL."""
    services = services_of(request)
    async with services.read_db.connection() as conn:
        app = await registry.app_by_id(conn, app_id)
    if app is None:
        return redirect("/apps", error="That app no longer exists.")
    outcome = await sync_url(services, app.url)
    if outcome.error is not None:
        return redirect("/apps", error=f"Resync of {app.name} failed: {outcome.error}")
    return redirect("/apps", notice=f"Resynced {app.name}.")


@post("/apps/{app_id:str}/delete", status_code=303)
async def remove_app(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
    """Remove an app and its functions."""
    async with services_of(request).read_db.connection() as conn:
        app = await registry.app_by_id(conn, app_id)
        removed = await registry.delete_app(conn, app_id)
    if not removed or app is None:
        return redirect("/apps", error="That app no longer exists.")
    return redirect("/apps", notice=f"Removed {app.name}.")


ROUTES = [apps_page, add_app, resync_app, remove_app]
