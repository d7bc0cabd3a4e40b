"""Server-initiated sync against the real Python SDK app, error mapping, discovery, the loop.

The Stepwell server runs in-process under uvicorn (on the test's event loop) so that the test
can call ``sync_url`` with its services while the SDK calls back into ``/fn/register``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.main import Services, create_app
from app.registry import store
from app.registry.discovery import app_url, discover, discovery_ports, run_sync_loop
from app.registry.sync import sync_url
from app.settings import Settings
from tests.integration.test_register import KEY, with_registry_routes
from tests.processes import Proc, clean_env, free_port, spawn

PY_APP = Path(__file__).resolve().parents[1] / "e2e" / "apps" / "py_app.py"
PY_FUNCTIONS = 26  # the functions in py_app.py plus the onFailure handler


@contextlib.asynccontextmanager
async def stepwell(db_url: str, port: int, **settings: Any) -> AsyncIterator[Services]:
    """A Stepwell HTTP server with the registry routes, served on this event loop."""
    base: dict[str, Any] = {"run_workers": False, "discovery": False, "poll": False}
    app = with_registry_routes(create_app(Settings(**{**base, **settings}), db_url))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("stepwell server did not start")
        await asyncio.sleep(0.02)
    try:
        yield app.state.services
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def py_app(tmp_path: Path, stepwell_port: int, **env: str) -> Iterator[Proc]:
    port = free_port()
    environment = clean_env(STEPWELL_URL=f"http://127.0.0.1:{stepwell_port}", **env)
    args = [sys.executable, str(PY_APP), "--port", str(port)]
    with spawn(
        args, port=port, log=tmp_path / "py_app.log", env=environment, health="/healthz"
    ) as p:
        yield p


@pytest.fixture(scope="module")
def dev_py_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One dev-mode Python SDK app for the module; it calls back to a fixed Stepwell port."""
    stepwell_port = free_port()
    with py_app(tmp_path_factory.mktemp("py"), stepwell_port, STEPWELL_MODE="dev") as proc:
        yield f"{proc.url}/api/inngest", stepwell_port


async def test_sync_url_registers_the_real_python_sdk_app(
    db_url: str, dev_py_app: tuple[str, int]
) -> None:
    url, port = dev_py_app
    async with stepwell(db_url, port) as services:
        outcome = await sync_url(services, url)
        assert outcome.ok, outcome
        assert (outcome.is_sdk, outcome.sync_kind) == (True, "out_of_band")
        async with services.db.connection() as conn:
            [app] = await store.list_apps(conn)
            functions = {f.slug: f for f in await store.list_functions(conn, app.id)}
            wildcard = await store.functions_for_event(conn, "e2e/wild.card")
            multi = await store.functions_for_event(conn, "e2e/multi.b")
        again = await sync_url(services, url)
    assert again.ok
    assert (app.name, app.url, app.sdk_language, app.framework) == ("e2e-py", url, "py", "fast_api")
    assert (app.error, app.function_count, app.method) == (None, PY_FUNCTIONS, "SERVE")
    assert len(functions) == PY_FUNCTIONS
    assert {f.config.retries for f in functions.values()} == {0, 1, 2, 3, 4}
    assert functions["e2e-py-flaky"].config.retries == 2
    assert functions["e2e-py-sequential"].config.retries == 4
    failure = functions["e2e-py-always-fails-failure"].config
    assert failure.retries == 0
    assert failure.event_triggers[0].event == "inngest/function.failed"
    assert failure.event_triggers[0].expression == (
        "event.data.function_id == 'e2e-py-always-fails'"
    )
    assert functions["e2e-py-expression"].config.event_triggers[0].expression == (
        "event.data.plan == 'pro'"
    )
    assert functions["e2e-py-cancellable"].config.cancel[0].event == "e2e/cancel"
    assert functions["e2e-py-sequential"].config.step_url == (
        f"{url}?fnId=e2e-py-sequential&stepId=step"
    )
    assert [f.slug for f in wildcard] == ["e2e-py-wildcard"]
    assert [f.slug for f in multi] == ["e2e-py-multi-trigger"]
    assert all(f.version == 1 for f in functions.values())


async def test_a_successful_sync_replaces_the_placeholder_of_the_url(
    db_url: str, dev_py_app: tuple[str, int]
) -> None:
    url, port = dev_py_app
    async with stepwell(db_url, port) as services:
        async with services.db.connection() as conn:
            await store.add_placeholder(conn, url, "unreachable", _now(services))
            [placeholder] = await store.list_apps(conn)
        assert placeholder.is_placeholder and placeholder.error == "unreachable"
        assert (await sync_url(services, url)).ok
        async with services.db.connection() as conn:
            apps = await store.list_apps(conn)
    assert [(a.name, a.error) for a in apps] == [("e2e-py", None)]


async def test_a_sync_to_a_dead_url_records_unreachable(db_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/inngest"
    async with stepwell(db_url, free_port()) as services:
        outcome = await sync_url(services, dead)
        async with services.db.connection() as conn:
            apps = await store.list_apps(conn)
    assert (outcome.ok, outcome.error, outcome.is_sdk) == (False, "unreachable", False)
    assert [(a.name, a.url, a.error, a.function_count) for a in apps] == [
        (dead, dead, "unreachable", 0)
    ]


async def test_a_failed_poll_marks_the_registered_app_and_the_next_sync_clears_it(
    db_url: str, dev_py_app: tuple[str, int]
) -> None:
    url, port = dev_py_app
    async with stepwell(db_url, port) as services:
        assert (await sync_url(services, url)).ok
        real_http = services.http
        services.http = _mock_client(lambda _: httpx.Response(500, headers=_SDK))
        assert (await sync_url(services, url)).error == "internal_server_error"
        async with services.db.connection() as conn:
            app = await store.app_by_name(conn, "e2e-py")
            assert app is not None and app.error == "internal_server_error"
        await services.http.aclose()
        services.http = real_http
        assert (await sync_url(services, url)).ok
        async with services.db.connection() as conn:
            app = await store.app_by_name(conn, "e2e-py")
    assert app is not None and app.error is None


_SDK = {"X-Inngest-SDK": "inngest-js:v4.24.0"}


def _mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def use_mock(services: Services, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    """Answer the server's outbound requests with ``handler`` (closed with the services)."""
    if services.http is not None:
        await services.http.aclose()
    services.http = _mock_client(handler)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (httpx.Response(400, headers=_SDK, json={"message": "Your signing key is invalid"}),
         "Your signing key is invalid"),
        (httpx.Response(401, headers=_SDK), "unauthorized"),
        (httpx.Response(403, headers=_SDK), "forbidden"),
        (httpx.Response(404), "url_not_found"),
        (httpx.Response(500, headers=_SDK), "internal_server_error"),
        (httpx.Response(200, text="hello"), "unreachable"),
        (httpx.Response(200, headers=_SDK, json={"error": "App ID required", "status": 400}),
         "App ID required"),
    ],
)  # fmt: skip
async def test_sync_failures_become_the_app_error(
    db_url: str, reply: httpx.Response, error: str
) -> None:
    url = "http://sdk.test/api/inngest"
    async with stepwell(db_url, free_port()) as services:
        await use_mock(services, lambda _: reply)
        outcome = await sync_url(services, url)
        async with services.db.connection() as conn:
            [app] = await store.list_apps(conn)
    assert outcome.error == error
    assert (app.name, app.error) == (url, error)


async def test_the_sync_put_is_signed_canonical_json_with_our_server_kind(db_url: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={**_SDK, "X-Inngest-Sync-Kind": "out_of_band"})

    url = "http://sdk.test/api/inngest"
    async with stepwell(
        db_url, free_port(), mode="start", signing_key=KEY, event_keys=("e",)
    ) as services:
        await use_mock(services, handler)
        assert (await sync_url(services, url)).ok
    [request] = seen
    assert request.method == "PUT"
    assert request.content == b'{"url":"http://sdk.test/api/inngest"}'
    assert request.headers["x-inngest-server-kind"] == "cloud"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-inngest-signature"].startswith("t=")


async def test_an_in_band_reply_is_registered(db_url: str) -> None:
    url = "http://sdk.test/api/inngest"
    function = {
        "id": "inband-hello",
        "name": "hello",
        "triggers": [{"event": "inband/hello"}],
        "steps": {"step": {"id": "step", "name": "step", "runtime": {"url": f"{url}?fnId=x"}}},
    }
    reply = {
        "app_id": "inband", "env": None, "framework": "fast_api", "functions": [function],
        "inspection": {"schema_version": "2024-05-24"}, "platform": None, "sdk_author": "inngest",
        "sdk_language": "py", "sdk_version": "0.5.19", "url": url,
    }  # fmt: skip
    kinds: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        kinds.append(request.headers.get("x-inngest-sync-kind"))
        return httpx.Response(200, headers={**_SDK, "X-Inngest-Sync-Kind": "in_band"}, json=reply)

    async with stepwell(db_url, free_port()) as services:
        await use_mock(services, handler)
        outcome = await sync_url(services, url, in_band=True)
        async with services.db.connection() as conn:
            app = await store.app_by_name(conn, "inband")
    assert kinds == ["in_band"]
    assert outcome.ok and outcome.sync_kind == "in_band" and outcome.app_id is not None
    assert app is not None and (app.sdk_language, app.sdk_version, app.function_count) == (
        "py",
        "v0.5.19",
        1,
    )


async def test_a_refused_in_band_sync_falls_back_to_a_plain_put(db_url: str) -> None:
    kinds: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        kind = request.headers.get("x-inngest-sync-kind")
        kinds.append(kind)
        if kind == "in_band":
            return httpx.Response(401, headers=_SDK)
        return httpx.Response(200, headers={**_SDK, "X-Inngest-Sync-Kind": "out_of_band"})

    async with stepwell(db_url, free_port()) as services:
        await use_mock(services, handler)
        outcome = await sync_url(services, "http://sdk.test/api/inngest", in_band=True)
    assert kinds == ["in_band", None]
    assert outcome.ok and outcome.sync_kind == "out_of_band"


async def test_self_hosted_sync_of_a_cloud_mode_python_app(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    env = {"STEPWELL_MODE": "cloud", "INNGEST_SIGNING_KEY": KEY, "INNGEST_EVENT_KEY": "evt"}
    with py_app(tmp_path, port, **env) as proc:
        url = f"{proc.url}/api/inngest"
        settings = {"mode": "start", "signing_key": KEY, "event_keys": ("evt",)}
        async with stepwell(db_url, port, **settings) as services:
            in_band = await sync_url(services, url, in_band=True)
            # Out-of-band, the SDK POSTs /fn/register with its Bearer hash of the key.
            out_of_band = await sync_url(services, url)
            async with services.db.connection() as conn:
                app = await store.app_by_name(conn, "e2e-py")
    assert (in_band.ok, in_band.sync_kind) == (True, "in_band"), in_band
    assert (out_of_band.ok, out_of_band.sync_kind) == (True, "out_of_band"), out_of_band
    assert app is not None and app.function_count == PY_FUNCTIONS and app.error is None


async def test_discovery_finds_an_sdk_only_where_one_answers(
    db_url: str, dev_py_app: tuple[str, int]
) -> None:
    url, port = dev_py_app
    sdk_port = int(url.split(":")[2].split("/")[0])
    dead = f"http://127.0.0.1:{free_port()}/api/inngest"
    async with stepwell(db_url, port) as services:
        found = await discover(services, [sdk_port, free_port(), port])
        assert (await sync_url(services, dead, autodiscovered=True)).error == "unreachable"
        async with services.db.connection() as conn:
            assert await store.list_apps(conn) == []  # a probe that found nothing leaves no app
        assert (await sync_url(services, url, autodiscovered=True)).ok
        async with services.db.connection() as conn:
            app = await store.app_by_name(conn, "e2e-py")
    assert found == [url]
    assert app is not None and app.autodiscovered


def test_discovery_probes_the_usual_ports_plus_port_but_not_our_own() -> None:
    ports = discovery_ports({"PORT": "9999"}, own_port=8288)
    assert ports[:2] == [80, 443] and 3010 in ports and 8787 in ports and ports[-1] == 9999
    assert discovery_ports({"PORT": "3000"}, own_port=8000).count(3000) == 1
    assert 8000 not in discovery_ports({}, own_port=8000)
    assert app_url("localhost:3000/api/inngest") == "http://localhost:3000/api/inngest"


async def test_the_sync_loop_syncs_configured_urls_until_stopped(
    db_url: str, dev_py_app: tuple[str, int]
) -> None:
    url, port = dev_py_app
    dead = f"127.0.0.1:{free_port()}/api/inngest"
    settings = {"sdk_urls": (url, dead), "poll_interval": 0.1, "discovery": True}
    async with stepwell(db_url, port, **settings) as services:
        loop = asyncio.create_task(run_sync_loop(services))
        try:
            names = {"e2e-py", f"http://{dead}"}
            apps = await _wait_for_apps(services, lambda apps: {a.name for a in apps} == names)
        finally:
            services.stop.set()
            await asyncio.wait_for(loop, timeout=15)
    by_name = {a.name: a for a in apps}
    assert by_name["e2e-py"].error is None and by_name["e2e-py"].function_count == PY_FUNCTIONS
    assert by_name[f"http://{dead}"].error == "unreachable"


async def _wait_for_apps(
    services: Services, done: Callable[[list[store.AppRecord]], bool]
) -> list[store.AppRecord]:
    for _ in range(200):
        async with services.db.connection() as conn:
            apps = await store.list_apps(conn)
        if done(apps):
            break
        await asyncio.sleep(0.1)
    return apps


def _now(services: Services) -> datetime:
    return datetime.fromtimestamp(services.clock.now_ms() / 1000, UTC)
