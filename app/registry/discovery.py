"""The dev server's sync loop: ``-u`` URLs, autodiscovery of local SDKs, and polling (§1.4).

At start every configured SDK URL gets a placeholder app (error ``unreachable``) unless an app
already answers there, and is synced.  Until the first app exists, and only with discovery on
in dev mode, the usual local ports are probed (a TCP connect first, so closed ports cost
nothing) and each usual path that answers a GET with ``X-Inngest-SDK`` is synced.  Then, every
poll interval, each serve-method app is synced again if polling is on or its last sync failed.
Errors are logged and never end the loop; it stops when ``services.stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import httpx

from app.drivers.signing import sign
from app.registry import store
from app.registry.sync import UNREACHABLE, sync_url
from app.settings import from_environ

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)

T = TypeVar("T")

DISCOVERY_HOST = "127.0.0.1"
DISCOVERY_PORTS: tuple[int, ...] = (
    80, 443, *range(3000, 3011), 4321, 5000, 5173, 8000, 8080, 8081, 8888, *range(8910, 8916), 8787,
)  # fmt: skip
DISCOVERY_PATHS = (
    "/api/inngest",
    "/x/inngest",
    "/.netlify/functions/inngest",
    "/.redwood/functions/inngest",
)
PROBE_TIMEOUT_S = 2.0


def discovery_ports(env: Mapping[str, str], own_port: int | None = None) -> list[int]:
    """The ports to probe: the usual ones plus ``$PORT``, never our own."""
    ports = list(DISCOVERY_PORTS)
    extra = env.get("PORT", "")
    if extra.isdigit() and 0 < int(extra) < 65536:
        ports.append(int(extra))
    return [p for p in dict.fromkeys(ports) if p != own_port]


def app_url(url: str) -> str:
    """``-u`` accepts ``host:port/path``; like ``inngest dev``, plain HTTP is assumed."""
    return url if "://" in url else f"http://{url}"


async def run_sync_loop(services: Services) -> None:
    """Sync ``-u`` URLs, discover local SDKs and poll apps until ``services.stop`` is set."""
    settings = services.settings
    ports = discovery_ports(from_environ(), own_port=settings.port)
    await _guarded(_sync_configured(services), None)
    # Probing local ports is a development convenience; a self-hosted server never does it.
    discovering = settings.discovery and not settings.is_self_hosted
    while not services.stop.is_set():
        if discovering:
            discovering = await _guarded(_discover_once(services, ports), True)
        if await _stopped(services.stop, settings.poll_interval):
            return
        await _guarded(_poll(services), None)


async def _guarded(work: Awaitable[T], default: T) -> T:
    try:
        return await work
    except Exception:
        log.exception("sync loop step failed")
        return default


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def _in_band(services: Services) -> bool:
    # Only a signed PUT can ask for in-band; dev-mode SDKs (Python) refuse it anyway.
    return services.settings.is_self_hosted and bool(services.settings.signing_key)


async def _sync_all(services: Services, urls: Iterable[str], *, auto: bool = False) -> None:
    in_band = _in_band(services)
    results = await asyncio.gather(
        *(sync_url(services, url, in_band=in_band, autodiscovered=auto) for url in urls),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            log.error("sync failed", exc_info=result)


async def _sync_configured(services: Services) -> None:
    urls = list(dict.fromkeys(app_url(u) for u in services.settings.sdk_urls))
    now = datetime.fromtimestamp(services.clock.now_ms() / 1000, UTC)
    async with services.ingest_db.connection() as conn:
        for url in urls:
            await store.add_placeholder(conn, url, UNREACHABLE, now)
    await _sync_all(services, urls)


async def _discover_once(services: Services, ports: Sequence[int]) -> bool:
    """Probe and sync once; False once an app exists (discovery is then over for good)."""
    async with services.ingest_db.connection() as conn:
        if await store.list_apps(conn):
            return False
    found = await discover(services, ports)
    if found:
        log.info("discovered SDK apps at %s", ", ".join(found))
        await _sync_all(services, found, auto=True)
    return True


async def discover(services: Services, ports: Sequence[int]) -> list[str]:
    """The local URLs (``ports`` by the usual paths) where an SDK answers a GET."""
    opened = await asyncio.gather(*(_port_open(port) for port in ports))
    urls = [
        f"http://{DISCOVERY_HOST}:{port}{path}"
        for port, is_open in zip(ports, opened, strict=True)
        if is_open
        for path in DISCOVERY_PATHS
    ]
    answers = await asyncio.gather(*(_is_sdk(services, url) for url in urls))
    return [url for url, is_sdk in zip(urls, answers, strict=True) if is_sdk]


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(DISCOVERY_HOST, port), timeout=PROBE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _is_sdk(services: Services, url: str) -> bool:
    headers = {}
    key = services.settings.signing_key
    if key:
        # A cloud-mode Python SDK answers unsigned GETs with 401.
        headers["X-Inngest-Signature"] = sign(b"", key, services.clock.now_ms() // 1000)
    assert services.http is not None, "services not started"
    try:
        reply = await services.http.get(url, headers=headers, timeout=PROBE_TIMEOUT_S)
    except (httpx.HTTPError, httpx.InvalidURL):
        return False
    return "x-inngest-sdk" in reply.headers


async def _poll(services: Services) -> None:
    async with services.ingest_db.connection() as conn:
        apps = await store.list_apps(conn)
    poll = services.settings.poll
    urls = {a.url for a in apps if a.method == "SERVE" and a.url and (poll or a.error)}
    await _sync_all(services, sorted(urls))
