"""``POST /fn/register`` against a real Postgres: upserts, versions, archiving, 400s, auth."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.clock import SystemClock
from app.expressions import MAX_EXPRESSION_LENGTH, MAX_NESTING_DEPTH
from app.http.auth import check_event_key
from app.http.dev import ROUTES as DEV_ROUTES
from app.http.errors import ApiError
from app.http.register import ROUTES as REGISTER_ROUTES
from app.main import Services, create_app
from app.registry import store
from app.settings import Settings
from tests.conftest import count_rows

URL = "http://127.0.0.1:8000/api/inngest"
KEY = "signkey-test-" + "ab" * 32
KEY_HASH = hashlib.sha256(bytes.fromhex("ab" * 32)).hexdigest()

Client = AsyncTestClient[Litestar]


def with_registry_routes(app: Litestar) -> Litestar:
    """Add this feature's routes unless ``create_app`` already wires them."""
    paths = {route.path for route in app.routes}
    for handler in [*REGISTER_ROUTES, *DEV_ROUTES]:
        if not set(handler.paths) & paths:
            app.register(handler)
    return app


def build_app(db_url: str, **settings: Any) -> Litestar:
    base: dict[str, Any] = {"run_workers": False, "discovery": False, "poll": False}
    return with_registry_routes(create_app(Settings(**{**base, **settings}), db_url))


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(build_app(db_url)) as c:
        yield c


@pytest.fixture
async def hosted(db_url: str) -> AsyncIterator[Client]:
    app = build_app(db_url, mode="start", signing_key=KEY, event_keys=("evt",))
    async with AsyncTestClient(app) as c:
        yield c


def fn(slug: str, event: str = "t/evt", **extra: Any) -> dict[str, Any]:
    return {
        "id": slug,
        "name": slug,
        "triggers": [{"event": event}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": f"{URL}?fnId={slug}&stepId=step"},
            }
        },
        **extra,
    }


def py_body(functions: list[dict[str, Any]], app: str = "shop") -> dict[str, Any]:
    """The shape inngest-py 0.5 POSTs: lowercase ``appname``, ``deploy_type``."""
    return {
        "appname": app,
        "capabilities": {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"},
        "deploy_type": "ping",
        "framework": "fast_api",
        "functions": functions,
        "sdk": "py:v0.5.19",
        "url": URL,
        "v": "0.1",
    }


def ts_body(functions: list[dict[str, Any]], app: str = "shop") -> dict[str, Any]:
    """The shape the TS SDK POSTs: ``appName``, ``deployType``, feature observations."""
    return {
        "url": URL,
        "deployType": "ping",
        "framework": "nodejs",
        "appName": app,
        "sdk": "js:v4.24.0",
        "v": "0.1",
        "capabilities": {"trust_probe": "v1", "connect": "v1"},
        "functions": functions,
        "featureObservations": {"sendEvents": {"readinessReason": "READY"}},
    }


async def register(client: Client, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post("/fn/register", content=content, headers=headers)
    return response.status_code, response.json()


def services(client: Client) -> Services:
    found: Services = client.app.state.services
    return found


async def test_register_stores_the_app_functions_versions_and_triggers(
    client: Client, db_url: str
) -> None:
    failure = fn(
        "shop-pay-failure",
        "inngest/function.failed",
        triggers=[
            {"event": "inngest/function.failed", "expression": "event.data.function_id == 'x'"}
        ],
    )
    tick = fn("shop-tick", triggers=[{"cron": "*/5 * * * *"}])
    body = py_body([fn("shop-pay", "shop/order.paid"), failure, tick])
    status, reply = await register(client, body)
    assert status == 200, reply
    assert reply["ok"] is True and reply["modified"] is True and reply["status"] == 200
    assert reply["sync_id"]
    async with services(client).db.connection() as conn:
        app = await store.app_by_name(conn, "shop")
        assert app is not None and app.id == reply["app_id"]
        assert (app.url, app.method, app.sdk_language, app.sdk_version) == (
            URL,
            "SERVE",
            "py",
            "v0.5.19",
        )
        assert (app.framework, app.error, app.function_count) == ("fast_api", None, 3)
        functions = {f.slug: f for f in await store.list_functions(conn, app.id)}
        crons = await store.cron_functions(conn)
    assert set(functions) == {"shop-pay", "shop-pay-failure", "shop-tick"}
    assert all(
        f.version == 1 and not f.archived and f.app_name == "shop" for f in functions.values()
    )
    assert [f.slug for f in crons] == ["shop-tick"]
    assert count_rows(db_url, "function_versions") == 3
    assert count_rows(db_url, "function_triggers") == 3


async def test_reregistering_the_same_body_is_not_modified_and_keeps_ids(
    client: Client, db_url: str
) -> None:
    body = py_body([fn("shop-pay")])
    _, first = await register(client, body)
    status, second = await register(client, body)
    assert status == 200
    assert second["modified"] is False and second["app_id"] == first["app_id"]
    assert second["sync_id"] != first["sync_id"]
    assert count_rows(db_url, "function_versions") == 1


async def test_feature_observations_do_not_count_as_a_change(client: Client) -> None:
    body = ts_body([fn("shop-pay")])
    await register(client, body)
    body["featureObservations"] = {"sendEvents": {"readinessReason": "OTHER"}}
    _, reply = await register(client, body)
    assert reply["modified"] is False


async def test_a_changed_config_bumps_the_version_and_keeps_the_old_one(
    client: Client, db_url: str
) -> None:
    await register(client, py_body([fn("shop-pay", "shop/v1"), fn("shop-other")]))
    _, reply = await register(client, py_body([fn("shop-pay", "shop/v2"), fn("shop-other")]))
    assert reply["modified"] is True
    async with services(client).db.connection() as conn:
        current = await store.function_by_slug_or_id(conn, "shop-pay")
        assert current is not None and current.version == 2
        assert current.config.event_triggers[0].event == "shop/v2"
        old = await store.function_at_version(conn, current.id, 1)
        assert old is not None and old.config.event_triggers[0].event == "shop/v1"
        other = await store.function_by_slug_or_id(conn, "shop-other")
        assert other is not None and other.version == 1
        assert await store.functions_for_event(conn, "shop/v1") == []
        assert [f.slug for f in await store.functions_for_event(conn, "shop/v2")] == ["shop-pay"]
    assert count_rows(db_url, "function_versions") == 3


async def test_a_vanished_function_is_archived_and_revived_when_it_returns(
    client: Client,
) -> None:
    await register(client, py_body([fn("shop-a", "shop/a"), fn("shop-b", "shop/b")]))
    async with services(client).db.connection() as conn:
        b = await store.function_by_slug_or_id(conn, "shop-b")
    assert b is not None
    await register(client, py_body([fn("shop-a", "shop/a")]))
    async with services(client).db.connection() as conn:
        assert await store.function_by_slug_or_id(conn, "shop-b") is None
        assert await store.functions_for_event(conn, "shop/b") == []
        archived = await store.list_functions(conn, include_archived=True)
        assert {(f.slug, f.archived) for f in archived} == {("shop-a", False), ("shop-b", True)}
        assert await store.function_at_version(conn, b.id, 1) is not None
    await register(client, py_body([fn("shop-a", "shop/a"), fn("shop-b", "shop/b")]))
    async with services(client).db.connection() as conn:
        revived = await store.function_by_slug_or_id(conn, "shop-b")
        assert revived is not None and revived.id == b.id and revived.version == 1
        assert [f.slug for f in await store.functions_for_event(conn, "shop/b")] == ["shop-b"]


@pytest.mark.parametrize(
    "key", ["appname", "appName", "APPNAME", "app_name"], ids=lambda k: f"key={k}"
)
async def test_app_name_key_matches_case_insensitively(client: Client, key: str) -> None:
    body = ts_body([fn("shop-pay")])
    del body["appName"]
    body[key] = "shop"
    status, reply = await register(client, body)
    assert status == 200, reply
    async with services(client).db.connection() as conn:
        assert [a.name for a in await store.list_apps(conn)] == ["shop"]


async def test_python_and_typescript_shapes_upsert_the_same_app(client: Client) -> None:
    _, first = await register(client, py_body([fn("shop-pay")]))
    _, second = await register(client, ts_body([fn("shop-pay")]))
    assert second["app_id"] == first["app_id"] and second["modified"] is True
    async with services(client).db.connection() as conn:
        app = await store.app_by_id(conn, first["app_id"])
    assert app is not None and (app.sdk_language, app.framework) == ("js", "nodejs")


async def test_connect_deploy_type_makes_a_connect_app(client: Client) -> None:
    body = ts_body([fn("shop-pay")])
    body["deployType"] = "connect"
    _, reply = await register(client, body)
    async with services(client).db.connection() as conn:
        app = await store.app_by_id(conn, reply["app_id"])
    assert app is not None and app.method == "CONNECT"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda f: f.update(triggers=[{"event": "a", "expression": "event.data.x =="}]),
         "functions[1].triggers[0].expression"),
        (lambda f: f.update(triggers=[{"cron": "every minute"}]), "functions[1].triggers[0].cron"),
        (lambda f: f.update(steps={}), "functions[1].steps"),
        (lambda f: f.update(concurrency=[{"limit": 1, "scope": "account"}]),
         "functions[1].concurrency[0].key"),
        (lambda f: f.update(rateLimit={"limit": 0, "period": "1h"}),
         "functions[1].rateLimit.limit"),
        (lambda f: f.update(id="shop-pay"), "functions[1].id"),
    ],
)  # fmt: skip
async def test_an_invalid_function_is_a_400_naming_the_field_that_changes_nothing(
    client: Client, db_url: str, mutate: Any, field: str
) -> None:
    bad = fn("shop-bad")
    mutate(bad)
    status, reply = await register(client, py_body([fn("shop-pay"), bad]))
    assert status == 400
    assert reply["status"] == 400
    assert reply["error"].startswith("At least one function is invalid")
    assert field in reply["error"]
    assert reply["data"]["field"] == field
    assert count_rows(db_url, "apps") == 0
    assert count_rows(db_url, "functions") == 0


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("(" * 5000 + "event.data.a == 1" + ")" * 5000,
         f"nested too deeply: 5000 levels, the limit is {MAX_NESTING_DEPTH}"),
        ("event.data.a == 1 || " * (MAX_EXPRESSION_LENGTH // 20) + "true",
         f"expression is too long: {MAX_EXPRESSION_LENGTH // 20 * 21 + 4} characters, "
         f"the limit is {MAX_EXPRESSION_LENGTH}"),
    ],
)  # fmt: skip
async def test_a_trigger_expression_past_the_compile_limits_is_a_400_that_stores_nothing(
    client: Client, db_url: str, expression: str, reason: str
) -> None:
    bad = fn("shop-bad")
    bad["triggers"] = [{"event": "t/evt", "expression": expression}]
    status, reply = await register(client, py_body([fn("shop-pay"), bad]))
    assert status == 400
    assert reply["data"]["field"] == "functions[1].triggers[0].expression"
    assert reason in reply["error"]
    assert len(reply["error"]) < 500  # the message quotes the start of the expression only
    assert count_rows(db_url, "apps") == 0
    assert count_rows(db_url, "functions") == 0


async def test_an_invalid_resync_leaves_the_existing_app_untouched(
    client: Client, db_url: str
) -> None:
    await register(client, py_body([fn("shop-pay")]))
    bad = copy.deepcopy(py_body([fn("shop-pay", "")]))
    status, _ = await register(client, bad)
    assert status == 400
    async with services(client).db.connection() as conn:
        app = await store.app_by_name(conn, "shop")
        current = await store.function_by_slug_or_id(conn, "shop-pay")
    assert app is not None and app.error is None
    assert current is not None and current.version == 1
    assert count_rows(db_url, "function_versions") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (py_body([fn("shop-pay")], app=""), "App ID required"),
        ({**py_body([]), "appname": "shop"}, "No functions registered within your app"),
        ({k: v for k, v in py_body([]).items() if k != "functions"},
         "No functions registered within your app"),
        (b"{not json", "Invalid request"),
        (b"[1, 2]", "Invalid request"),
        (b"\xff\xfe", "Invalid request"),
        (b"[" * 100_000 + b"]" * 100_000, "Invalid request"),
        (b'{"appname": "shop", "functions": [NaN]}', "Invalid request"),
        ({**py_body([fn("shop-pay")]), "functions": "all"}, "Invalid request"),
        ({**py_body([fn("shop-pay")]), "appname": 7}, "Invalid request"),
        ({**py_body([fn("shop-pay")]), "url": ["x"]}, "Invalid request"),
        ({**py_body([]), "functions": ["not a function"]}, "At least one function is invalid"),
    ],
)  # fmt: skip
async def test_bad_requests_are_400s_that_change_nothing(
    client: Client, db_url: str, body: Any, message: str
) -> None:
    status, reply = await register(client, body)
    assert status == 400, reply
    assert reply["error"].startswith(message)
    assert reply["status"] == 400
    assert count_rows(db_url, "apps") == 0


async def test_a_body_meant_for_another_server_kind_is_rejected(
    client: Client, db_url: str
) -> None:
    status, reply = await register(
        client, py_body([fn("shop-pay")]), **{"X-Inngest-Expected-Server-Kind": "cloud"}
    )
    assert status == 400
    assert reply["error"] == "Expected server kind dev, got cloud"
    assert count_rows(db_url, "apps") == 0
    status, _ = await register(
        client, py_body([fn("shop-pay")]), **{"X-Inngest-Expected-Server-Kind": "dev"}
    )
    assert status == 200


async def test_registration_replaces_the_placeholder_of_its_url(client: Client) -> None:
    async with services(client).db.connection() as conn:
        await store.record_sync_error(conn, URL, "unreachable", _now())
        assert [a.is_placeholder for a in await store.list_apps(conn)] == [True]
    await register(client, py_body([fn("shop-pay")]))
    async with services(client).db.connection() as conn:
        apps = await store.list_apps(conn)
    assert [(a.name, a.error) for a in apps] == [("shop", None)]


async def test_an_app_with_a_sync_error_is_resynced_even_if_unchanged(client: Client) -> None:
    body = py_body([fn("shop-pay")])
    await register(client, body)
    async with services(client).db.connection() as conn:
        await store.record_sync_error(conn, URL, "unreachable", _now())
    _, reply = await register(client, body)
    assert reply["modified"] is True
    async with services(client).db.connection() as conn:
        app = await store.app_by_name(conn, "shop")
    assert app is not None and app.error is None


async def test_functions_for_event_matches_names_and_wildcards_once(client: Client) -> None:
    both = fn("shop-both", triggers=[{"event": "shop/order.paid"}, {"event": "shop/*"}])
    await register(
        client,
        py_body([both, fn("shop-dot", "shop/order.*"), fn("shop-miss", "shop/other")]),
    )
    async with services(client).db.connection() as conn:
        matched = await store.functions_for_event(conn, "shop/order.paid")
        by_id = await store.function_by_slug_or_id(conn, matched[0].id)
    assert [f.slug for f in matched] == ["shop-both", "shop-dot"]
    assert by_id is not None and by_id.slug == "shop-both"


async def test_delete_app_removes_its_functions(client: Client, db_url: str) -> None:
    _, reply = await register(client, py_body([fn("shop-pay")]))
    async with services(client).db.connection() as conn:
        assert await store.delete_app(conn, reply["app_id"]) is True
        assert await store.delete_app(conn, reply["app_id"]) is False
    assert count_rows(db_url, "functions") == 0


async def test_dev_mode_register_is_open_even_with_bearer_undefined(client: Client) -> None:
    status, _ = await register(client, ts_body([fn("shop-pay")]), Authorization="Bearer undefined")
    assert status == 200


@pytest.mark.parametrize(
    "authorization", [None, "Bearer undefined", "Bearer " + "0" * 64, "Basic abc"]
)
async def test_self_hosted_register_requires_the_signing_key(
    hosted: Client, db_url: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, reply = await register(hosted, py_body([fn("shop-pay")]), **headers)
    assert status == 401
    assert reply["error"] == "unauthorized" and reply["status"] == 401
    assert count_rows(db_url, "apps") == 0


@pytest.mark.parametrize(
    "token",
    [KEY_HASH, f"signkey-test-{KEY_HASH}", KEY],
    ids=["python-bare-hash", "typescript-prefixed-hash", "raw-key"],
)
async def test_self_hosted_register_accepts_the_key_as_each_sdk_sends_it(
    hosted: Client, token: str
) -> None:
    status, reply = await register(
        hosted,
        py_body([fn("shop-pay")]),
        Authorization=f"Bearer {token}",
        **{"X-Inngest-Expected-Server-Kind": "cloud"},
    )
    assert status == 200, reply


async def test_dev_endpoint_lists_functions(client: Client) -> None:
    await register(client, ts_body([fn("shop-pay", "shop/paid", concurrency=3)]))
    response = await client.get("/dev")
    assert response.status_code == 200
    info = response.json()
    assert info["startOpts"]["autodiscover"] is False
    [function] = info["functions"]
    assert function["slug"] == "shop-pay"
    assert function["triggers"] == [{"event": "shop/paid"}]
    assert function["steps"][0]["uri"] == f"{URL}?fnId=shop-pay&stepId=step"
    assert function["concurrency"] == 3
    assert response.headers["x-inngest-server-kind"] == "dev"


async def test_dev_endpoint_is_not_found_when_self_hosted(hosted: Client) -> None:
    response = await hosted.get("/dev")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def _services(**settings: Any) -> Services:
    return Services(settings=Settings(**settings), database_url="", clock=SystemClock())


def test_dev_mode_accepts_any_event_key() -> None:
    check_event_key(_services(), "NO_EVENT_KEY_SET")
    check_event_key(_services(), None)


@pytest.mark.parametrize(
    ("keys", "key", "status", "message"),
    [
        (("evt",), "other", 401, "Event key not found"),
        (("evt",), "", 401, "Event key is required"),
        ((), "evt", 503, "Event keys are required but none are configured"),
    ],
)
def test_self_hosted_event_keys_are_checked(
    keys: tuple[str, ...], key: str, status: int, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        check_event_key(_services(mode="start", event_keys=keys), key)
    assert (caught.value.status, caught.value.message) == (status, message)
    check_event_key(_services(mode="start", event_keys=("a", "evt")), "evt")


def _now() -> datetime:
    return datetime.now(UTC)
