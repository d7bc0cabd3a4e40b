"""HTML rendering for the dev UI: the Jinja environment, its filters, and page responses.

Pages are server-rendered Jinja templates (autoescaped; user data is never marked safe).  A
live region of a page is its own ``_*.html`` template, included by the page and served alone
when the page's URL is asked for with ``?fragment=1``: the small script in ``static/app.js``
polls that URL and swaps the region, so one template renders both the first paint and every
refresh.  Times are rendered as ``<time>`` elements in UTC (the script shows them in local
time); durations and JSON are formatted here so every page shows them alike.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
from litestar import MediaType, Request, Response
from litestar.response import Redirect
from markupsafe import Markup, escape

if TYPE_CHECKING:
    from app.main import Services

UI_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = UI_DIR / "templates"
STATIC_DIR = UI_DIR / "static"
STATIC_PATH = "/ui/static"
FRAGMENT_PARAM = "fragment"
NAV = (
    ("Runs", "/runs"), ("Events", "/events"), ("Apps", "/apps"), ("Functions", "/functions"),
    ("Dead letters", "/dead-letters"),
)  # fmt: skip
#: ``request.state`` key: how many dead letters there are, left by the UI router's
#: ``before_request`` for the navigation of full pages (``app.ui.dead_letters``).
DEAD_LETTER_COUNT = "dead_letter_count"
#: Past this many the navigation says "999+": counting further would slow every page.
NAV_COUNT_CAP = 999


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def now_ms(request: Request[Any, Any, Any]) -> int:
    return services_of(request).clock.now_ms()


def is_fragment(request: Request[Any, Any, Any]) -> bool:
    return request.query_params.get(FRAGMENT_PARAM) == "1"


# --- filters ---


def to_datetime(value: datetime | int | None) -> datetime | None:
    """A datetime from a datetime or epoch milliseconds (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(value / 1000, UTC)


def iso(value: datetime | int | None) -> str:
    found = to_datetime(value)
    return "" if found is None else found.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_NO_TIME = Markup('<span class="muted">—</span>')


def time_tag(value: datetime | int | None) -> Markup:
    """``<time>`` in UTC; ``app.js`` rewrites its text in the viewer's time zone."""
    found = to_datetime(value)
    if found is None:
        return _NO_TIME
    # Built by hand (no user text in it): Markup.format costs more than the whole query here.
    stamp = iso(found)
    return Markup(f'<time datetime="{stamp}" title="{stamp}">{found:%Y-%m-%d %H:%M:%S} UTC</time>')


def duration(ms: int | float | None) -> str:
    """``850ms``, ``1.25s``, ``3m 05s``, ``2h 03m``, ``3d 4h``; ``—`` when unknown."""
    if ms is None:
        return "—"
    ms = max(int(ms), 0)
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f}".rstrip("0").rstrip(".") + "s"
    seconds = ms // 1000
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def pretty_json(value: Any) -> str:
    """Indented JSON text (escaped by the template like any other text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def status_chip(status: str | None) -> Markup:
    label = escape(status or "Unknown")
    css = "".join(c for c in label.lower() if c.isalnum())
    return Markup(f'<span class="chip chip-{css}" data-status="{label}">{label}</span>')


@functools.cache
def _asset_version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    """The URL of a shipped asset, versioned by its content so browsers never run stale JS."""
    return f"{STATIC_PATH}/{name}?v={_asset_version(name)}"


def query(base: str, params: Mapping[str, Any]) -> str:
    """``base`` with ``params`` (lists repeat, empty values are dropped)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, str(v)) for v in values if v not in (None, ""))
    return f"{base}?{urlencode(pairs)}" if pairs else base


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=time_tag, iso=iso, duration=duration, pretty=pretty_json, compact=compact_json,
        chip=status_chip,
    )  # fmt: skip
    env.globals.update(static=static_url, query=query, nav=NAV)
    return env


# --- responses ---


def nav_for(request: Request[Any, Any, Any]) -> list[tuple[str | Markup, str]]:
    """The top navigation, with the dead-letter count when there are any (it stops a run)."""
    count = request.state.get(DEAD_LETTER_COUNT) or 0
    if not count:
        return list(NAV)
    shown = f"{NAV_COUNT_CAP}+" if count > NAV_COUNT_CAP else str(count)
    label = Markup('Dead letters <span class="nav-count">({})</span>').format(shown)
    return [(label, href) if href == "/dead-letters" else (name, href) for name, href in NAV]


def render(template: str, context: Mapping[str, Any]) -> str:
    return environment().get_template(template).render(context)


def page(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    fragment: str | None = None,
    **context: Any,
) -> Response[str]:
    """The page ``template``, or only its live region ``fragment`` when polled for it."""
    settings = services_of(request).settings
    values = {
        "request": request,
        "path": request.url.path,
        "self_hosted": settings.is_self_hosted,
        "nav": nav_for(request),
        # Banners come back through the URL after a redirect; they are escaped text, capped.
        "notice": (request.query_params.get("notice") or "")[:500] or None,
        "error": (request.query_params.get("error") or "")[:2000] or None,
        **context,
    }
    name = fragment if fragment is not None and is_fragment(request) else template
    return Response(
        render(name, values),
        media_type=MediaType.HTML,
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def not_found(request: Request[Any, Any, Any], what: str) -> Response[str]:
    return page(request, "not_found.html", status=404, what=what)


def redirect(path: str, *, notice: str | None = None, error: str | None = None) -> Redirect:
    """A 303 (the browser follows it with GET) to ``path``, with an optional banner."""
    return Redirect(query(path, {"notice": notice, "error": error}), status_code=303)


def plain(status: int, message: str) -> Response[str]:
    return Response(
        message, media_type=MediaType.TEXT, status_code=status,
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip
