"""GraphQL ``App`` and ``Function`` (with its ``configuration``), built from registry records.

``Function.configuration`` is a best-effort view of the synced ``FunctionConfig`` in Inngest's
shapes: periods keep the string the SDK sent when there is one (``"1m"``), else Go's duration
format; an unset concurrency shows the account-level plan limit of ``-1`` as upstream does;
``retries.isDefault`` compares with the default of 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

import strawberry

from app.graphql.context import GqlInfo, loaders
from app.graphql.scalars import json_text
from app.registry import store as registry
from domain.function_config import DEFAULT_RETRIES, EventTrigger, FunctionConfig


@strawberry.enum
class AppMethod(Enum):
    SERVE = "SERVE"
    CONNECT = "CONNECT"
    API = "API"


@strawberry.type
class SDKFeatureStatus:
    ready: bool
    reason: int | None = None


@strawberry.type
class SDKFeatureReadiness:
    aiMetadataExtraction: SDKFeatureStatus | None = None
    extendedTraces: SDKFeatureStatus | None = None


@strawberry.type
class App:
    record: strawberry.Private[registry.AppRecord]
    id: strawberry.ID
    externalID: str
    name: str
    sdkLanguage: str
    sdkVersion: str
    framework: str | None
    url: str | None
    checksum: str | None
    error: str | None
    method: AppMethod
    appVersion: str | None
    sdkFeatureReadiness: SDKFeatureReadiness
    connected: bool
    functionCount: int
    autodiscovered: bool

    @strawberry.field
    async def functions(self, info: GqlInfo) -> list[Function]:
        async with loaders(info).reads.connection() as conn:
            records = await registry.list_functions(conn, self.record.id)
        return [make_function(r) for r in records]


def make_app(r: registry.AppRecord) -> App:
    method = AppMethod[r.method] if r.method in AppMethod.__members__ else AppMethod.SERVE
    return App(
        record=r, id=strawberry.ID(r.id), externalID=r.name, name=r.name,
        sdkLanguage=r.sdk_language, sdkVersion=r.sdk_version, framework=r.framework,
        url=r.url, checksum=r.checksum, error=r.error, method=method, appVersion=r.app_version,
        sdkFeatureReadiness=SDKFeatureReadiness(),
        connected=method is AppMethod.CONNECT and r.error is None,
        functionCount=r.function_count, autodiscovered=r.autodiscovered,
    )  # fmt: skip


@strawberry.enum
class FunctionTriggerTypes(Enum):
    EVENT = "EVENT"
    CRON = "CRON"


@strawberry.type
class FunctionTrigger:
    type: FunctionTriggerTypes
    value: str
    condition: str | None = None


@strawberry.enum
class ConcurrencyScope(Enum):
    ACCOUNT = "ACCOUNT"
    ENVIRONMENT = "ENVIRONMENT"
    FUNCTION = "FUNCTION"


@strawberry.enum
class SingletonMode(Enum):
    SKIP = "SKIP"
    CANCEL = "CANCEL"


@strawberry.type
class CancellationConfiguration:
    event: str
    timeout: str | None = None
    condition: str | None = None


@strawberry.type
class RetryConfiguration:
    value: int
    isDefault: bool | None


@strawberry.type
class EventsBatchConfiguration:
    maxSize: int
    timeout: str
    key: str | None = None


@strawberry.type
class ConcurrencyLimitConfiguration:
    value: int
    isPlanLimit: bool | None


@strawberry.type
class ConcurrencyConfiguration:
    scope: ConcurrencyScope
    limit: ConcurrencyLimitConfiguration
    key: str | None = None


@strawberry.type
class RateLimitConfiguration:
    limit: int
    period: str
    key: str | None = None


@strawberry.type
class DebounceConfiguration:
    period: str
    key: str | None = None


@strawberry.type
class ThrottleConfiguration:
    burst: int
    limit: int
    period: str
    key: str | None = None


@strawberry.type
class SingletonConfiguration:
    mode: SingletonMode
    key: str | None = None


@strawberry.type
class FunctionConfiguration:
    cancellations: list[CancellationConfiguration]
    retries: RetryConfiguration
    priority: str | None
    eventsBatch: EventsBatchConfiguration | None
    concurrency: list[ConcurrencyConfiguration]
    rateLimit: RateLimitConfiguration | None
    debounce: DebounceConfiguration | None
    throttle: ThrottleConfiguration | None
    singleton: SingletonConfiguration | None


@strawberry.type
class Function:
    record: strawberry.Private[registry.FunctionRecord]
    id: str
    name: str
    slug: str
    config: str
    concurrency: int
    url: str
    appID: str
    triggers: list[FunctionTrigger] | None
    configuration: FunctionConfiguration

    @strawberry.field
    async def app(self, info: GqlInfo) -> App:
        record = await loaders(info).app(self.record.app_id)
        if record is None:
            raise LookupError(f"app {self.record.app_id} of function {self.slug} is gone")
        return make_app(record)

    @strawberry.field
    async def failureHandler(self, info: GqlInfo) -> Function | None:
        # SDKs register a function's onFailure handler as "<slug>-failure".
        async with loaders(info).reads.connection() as conn:
            record = await registry.function_by_slug_or_id(conn, f"{self.slug}-failure")
        return None if record is None else make_function(record)


def make_function(r: registry.FunctionRecord) -> Function:
    c = r.config
    unkeyed = [x.limit for x in c.concurrency if x.scope == "fn" and x.key is None]
    return Function(
        record=r, id=r.id, name=r.name, slug=r.slug, config=json_text(dict(c.raw)),
        concurrency=unkeyed[0] if unkeyed else 0, url=c.step_url, appID=r.app_id,
        triggers=[_trigger(t) for t in c.triggers], configuration=configuration(c),
    )  # fmt: skip


def _trigger(t: Any) -> FunctionTrigger:
    if isinstance(t, EventTrigger):
        return FunctionTrigger(
            type=FunctionTriggerTypes.EVENT, value=t.event, condition=t.expression
        )
    return FunctionTrigger(type=FunctionTriggerTypes.CRON, value=t.cron)


_SCOPES = {"fn": ConcurrencyScope.FUNCTION, "env": ConcurrencyScope.ENVIRONMENT,
           "account": ConcurrencyScope.ACCOUNT}  # fmt: skip


def configuration(c: FunctionConfig) -> FunctionConfiguration:
    raw = c.raw
    concurrency = [
        ConcurrencyConfiguration(
            scope=_SCOPES.get(x.scope, ConcurrencyScope.FUNCTION),
            limit=ConcurrencyLimitConfiguration(value=x.limit, isPlanLimit=False),
            key=x.key,
        )
        for x in c.concurrency
    ] or [
        ConcurrencyConfiguration(
            scope=ConcurrencyScope.ACCOUNT,
            limit=ConcurrencyLimitConfiguration(value=-1, isPlanLimit=True),
        )
    ]
    b, rl, d, t, s = c.batch_events, c.rate_limit, c.debounce, c.throttle, c.singleton
    return FunctionConfiguration(
        cancellations=[
            CancellationConfiguration(event=x.event, timeout=x.timeout, condition=x.if_expr)
            for x in c.cancel
        ],
        retries=RetryConfiguration(value=c.retries, isDefault=c.retries == DEFAULT_RETRIES),
        priority=c.priority_run,
        eventsBatch=None if b is None else EventsBatchConfiguration(
            maxSize=b.max_size, timeout=_period(raw, "batchEvents", "timeout", b.timeout_ms),
            key=b.key,
        ),
        concurrency=concurrency,
        rateLimit=None if rl is None else RateLimitConfiguration(
            limit=rl.limit, period=_period(raw, "rateLimit", "period", rl.period_ms), key=rl.key
        ),
        debounce=None if d is None else DebounceConfiguration(
            period=_period(raw, "debounce", "period", d.period_ms), key=d.key
        ),
        throttle=None if t is None else ThrottleConfiguration(
            burst=t.burst, limit=t.limit, period=_period(raw, "throttle", "period", t.period_ms),
            key=t.key,
        ),
        singleton=None if s is None else SingletonConfiguration(
            mode=SingletonMode.CANCEL if s.mode == "cancel" else SingletonMode.SKIP, key=s.key
        ),
    )  # fmt: skip


def _lookup(obj: Any, key: str) -> Any:
    # Synced configs spell keys in either SDK's way; the parser matches them case-insensitively.
    if not isinstance(obj, Mapping):
        return None
    for k, v in obj.items():
        if str(k).lower().replace("_", "") == key.lower():
            return v
    return None


def _period(raw: Mapping[str, Any], section: str, key: str, ms: int) -> str:
    sent = _lookup(_lookup(raw, section), key)
    return sent if isinstance(sent, str) and sent else go_duration(ms)


def go_duration(ms: int) -> str:
    """``ms`` as Go's ``time.Duration.String`` writes it (``90000`` ⇒ ``"1m30s"``)."""
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
