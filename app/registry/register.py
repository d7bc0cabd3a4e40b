"""Processing a registration: the body of ``POST /fn/register`` or of an in-band sync reply.

Protocol §1.2/§1.3: reject a body meant for the other server kind, an empty app name, a body
without functions and any invalid function (the 400 names the field); otherwise compare the
body's checksum (SHA-256 of the body without ``featureObservations``) with the app's last sync,
answer ``modified: false`` when nothing changed and the app is healthy, and else upsert the app
by name and its functions by slug in one transaction.  Top-level keys match case-insensitively
(Python sends ``appname`` and ``deploy_type``).  Rejections change nothing; a store failure is
recorded as the app's ``error``.  Every reply carries ``status``; failures carry ``error``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from apscheduler.triggers.cron import CronTrigger

from app.expressions import validate_expression
from app.registry import store
from app.registry.store import AppFields
from domain.errors import InvalidFunctionConfig
from domain.function_config import FunctionConfig, expand_cron, parse_function_config

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)

NO_FUNCTIONS = "No functions registered within your app"
INVALID_FUNCTION = "At least one function is invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterResult:
    status: int
    body: dict[str, Any]
    app_id: str | None = None
    modified: bool = False

    @property
    def error(self) -> str | None:
        error = self.body.get("error")
        return error if isinstance(error, str) else None


class _Rejected(Exception):
    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


def validate_cron(expr: str) -> None:
    """Raise ValueError unless APScheduler (which schedules the ticks) accepts ``expr``."""
    _, spec = expand_cron(expr)
    # robfig/cron (Go) takes "?" as "any" in the day fields; APScheduler spells it "*".
    CronTrigger.from_crontab(spec.replace("?", "*"), timezone=UTC)


def _checked(check: Callable[[str], None]) -> Callable[[str], None]:
    """``check`` with every failure as ValueError: bad input must never become a 500."""

    def run(source: str) -> None:
        try:
            check(source)
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"cannot be compiled ({type(exc).__name__})") from exc

    return run


_CHECK_EXPRESSION = _checked(validate_expression)
_CHECK_CRON = _checked(validate_cron)


def server_kind(services: Services) -> str:
    return "cloud" if services.settings.is_self_hosted else "dev"


async def register_app(
    services: Services,
    body: bytes,
    headers: Mapping[str, str],
    *,
    in_band_url: str | None = None,
) -> RegisterResult:
    """Register the app described by ``body``; ``in_band_url`` marks an in-band sync reply."""
    ours = server_kind(services)
    expected = {k.lower(): v for k, v in headers.items()}.get("x-inngest-expected-server-kind")
    try:
        if expected and expected != ours:
            raise _Rejected(f"Expected server kind {ours}, got {expected}")
        request = _decode(body)
        if in_band_url is not None:
            request = _from_in_band(request, in_band_url)
        app, configs = _parse(request)
    except _Rejected as exc:
        return _failure(400, exc.message, exc.data)
    try:
        result = await _save(services, app, configs)
        # This process sees its own sync at once (other processes within the cache's TTL).
        services.functions.clear()
        return result
    except psycopg.DataError as exc:
        # A value PostgreSQL cannot store (a NUL byte in a name, URL or config): bad input,
        # refused like any other invalid body; the transaction rolled back, nothing changed.
        return _failure(400, f"Invalid request: {(str(exc) or 'invalid value').splitlines()[0]}")
    except psycopg.OperationalError:
        raise  # the database is unreachable or busy: a retryable 503 (app/http/errors.py)
    except Exception as exc:
        log.exception("saving the sync of app %r failed", app.name)
        await _record_failure(services, app.name, f"Error saving app: {exc}")
        return _failure(500, "Error saving app")


def _failure(status: int, message: str, data: Any = None) -> RegisterResult:
    return RegisterResult(status=status, body={"error": message, "status": status, "data": data})


def _decode(body: bytes) -> dict[str, Any]:
    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        request = json.loads(body, parse_constant=reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _Rejected(f"Invalid request: {exc}") from None
    if not isinstance(request, dict):
        raise _Rejected("Invalid request: the body must be a JSON object")
    return request


def _fold(obj: Mapping[str, Any]) -> dict[str, Any]:
    # Go's JSON decoding matches field names case-insensitively; underscores are Python's.
    return {k.lower().replace("_", ""): v for k, v in obj.items() if v is not None}


def _from_in_band(reply: dict[str, Any], sent_url: str) -> dict[str, Any]:
    """The registration an in-band reply (§1.3) stands for."""
    fields = _fold(reply)
    language, version = fields.get("sdklanguage"), fields.get("sdkversion")
    sdk = f"{language}:v{version}" if language and version else fields.get("sdk", "")
    return {
        "appName": fields.get("appid"),
        "url": fields.get("url") or sent_url,
        "deployType": "ping",
        "sdk": sdk,
        "framework": fields.get("framework"),
        "appVersion": fields.get("appversion"),
        "functions": fields.get("functions"),
    }


def _string(fields: dict[str, Any], key: str, label: str) -> str | None:
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise _Rejected(f"Invalid request: {label} must be a string")
    return value


def _parse(request: dict[str, Any]) -> tuple[AppFields, list[FunctionConfig]]:
    fields = _fold(request)
    name = _string(fields, "appname", "appName")
    if not name:
        raise _Rejected("App ID required")
    functions = fields.get("functions")
    if functions is not None and not isinstance(functions, list):
        raise _Rejected("Invalid request: functions must be a list")
    if not functions:
        raise _Rejected(NO_FUNCTIONS)
    sdk = _string(fields, "sdk", "sdk") or ""
    language, _, version = sdk.partition(":")
    deploy_type = _string(fields, "deploytype", "deployType")
    app = AppFields(
        name=name,
        url=_string(fields, "url", "url") or "",
        method="CONNECT" if deploy_type == "connect" else "SERVE",
        sdk_language=language,
        sdk_version=version,
        framework=_string(fields, "framework", "framework"),
        app_version=_string(fields, "appversion", "appVersion"),
        checksum=_checksum(request),
    )
    return app, _parse_functions(functions)


def _parse_functions(functions: list[Any]) -> list[FunctionConfig]:
    configs: list[FunctionConfig] = []
    seen: set[str] = set()
    try:
        for index, raw in enumerate(functions):
            config = parse_function_config(
                raw,
                validate_expression=_CHECK_EXPRESSION,
                validate_cron=_CHECK_CRON,
                index=index,
            )
            if config.slug in seen:
                raise InvalidFunctionConfig(f"functions[{index}].id", "duplicate function id")
            seen.add(config.slug)
            configs.append(config)
    except InvalidFunctionConfig as exc:
        data = {"field": exc.field, "message": exc.message}
        raise _Rejected(f"{INVALID_FUNCTION}: {exc}", data) from None
    return configs


def _checksum(request: dict[str, Any]) -> str:
    # Feature observations change between boots of the same code; they must not force a sync.
    kept = {k: v for k, v in request.items() if k.lower() != "featureobservations"}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now(services: Services) -> datetime:
    return datetime.fromtimestamp(services.clock.now_ms() / 1000, UTC)


async def _save(
    services: Services, app: AppFields, configs: list[FunctionConfig]
) -> RegisterResult:
    now = _now(services)
    async with services.ingest_db.connection() as conn, conn.transaction():
        await store.lock_app_sync(conn, app.name)
        if app.url:
            # The app now answers at this URL under its own name: drop the URL's placeholder.
            await store.delete_placeholders(conn, app.url, app.name)
        unchanged = await store.unchanged_app_id(conn, app.name, app.checksum)
        if unchanged is not None and not unchanged[1]:
            return _success(unchanged[0], modified=False)
        app_id = await store.upsert_app(conn, app, now)
        await store.sync_functions(conn, app_id, configs, now)
    log.info("synced app %r: %d functions", app.name, len(configs))
    return _success(app_id, modified=True)


def _success(app_id: str, *, modified: bool) -> RegisterResult:
    body = {
        "ok": True,
        "modified": modified,
        "app_id": app_id,
        "sync_id": str(uuid.uuid4()),
        "status": 200,
    }
    return RegisterResult(status=200, body=body, app_id=app_id, modified=modified)


async def _record_failure(services: Services, name: str, error: str) -> None:
    try:
        async with services.ingest_db.connection() as conn:
            existing = await store.app_by_name(conn, name)
            if existing is not None:
                await store.set_app_error(conn, existing.id, error, _now(services))
    except Exception:
        log.exception("could not record the sync error of app %r", name)
