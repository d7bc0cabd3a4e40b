"""Function configs as SDKs sync them: the typed model, its parsing and its validation rules.

``parse_function_config`` turns one ``functions[]`` entry of a ``/fn/register`` body (protocol
§1.2) into a ``FunctionConfig`` or raises ``InvalidFunctionConfig`` naming the offending field
(``functions[2].triggers[0].expression``).  It accepts both SDKs' shapes: keys of config objects
match case-insensitively (Go's JSON decoding does, and the SDKs mix ``rateLimit`` with
``max_size``-style spellings), nulls count as absent (Python drops them, TS omits them), empty
lists count as unset, and ``concurrency`` may be a number, an object or a list.  Expression and
cron checks are injected callables so that this module stays pure; stored configs are re-parsed
with a no-op expression check.  ``trigger_patterns`` lists the trigger names an event matches.
"""

from __future__ import annotations

import re
import urllib.parse
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from domain.durations import InvalidDuration, parse_date, parse_duration
from domain.errors import InvalidFunctionConfig

DEFAULT_RETRIES = 4
MAX_RETRIES = 20
MAX_TRIGGERS = 10
MAX_EVENT_NAME = 255
MAX_CRON_LENGTH = 255
MAX_CONCURRENCY_LIMITS = 2
MAX_CANCELS = 5
CONCURRENCY_SCOPES = frozenset({"fn", "env", "account"})
SINGLETON_MODES = frozenset({"skip", "cancel"})
STEP_SCHEMES = frozenset({"http", "https", "ws", "wss"})
#: ``idempotency: expr`` is a rate limit of one run per key per day.
IDEMPOTENCY_PERIOD_MS = 86_400_000
#: Descriptors expand to the five-field spec they abbreviate.
CRON_DESCRIPTORS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}  # fmt: skip

_SECOND = timedelta(seconds=1)
_CRON_FIELD = re.compile(r"[0-9A-Za-z*?/,#\-]+")
_CRON_TZ = re.compile(r"(?:CRON_TZ|TZ)=(\S+)\s+(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventTrigger:
    event: str
    expression: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CronTrigger:
    cron: str
    jitter: str | None = None


Trigger = EventTrigger | CronTrigger


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyLimit:
    limit: int
    key: str | None = None
    scope: str = "fn"


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    limit: int
    period_ms: int
    key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttle:
    limit: int
    period_ms: int
    burst: int = 1
    key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Debounce:
    period_ms: int
    key: str | None = None
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchEvents:
    max_size: int
    timeout_ms: int
    key: str | None = None
    if_expr: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOn:
    event: str
    if_expr: str | None = None
    timeout: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    start_ms: int | None = None
    finish_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Singleton:
    mode: str
    key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionConfig:
    slug: str
    name: str
    triggers: tuple[Trigger, ...]
    step_url: str
    runtime_type: str
    retries: int
    concurrency: tuple[ConcurrencyLimit, ...] = ()
    rate_limit: RateLimit | None = None
    idempotency: str | None = None
    throttle: Throttle | None = None
    debounce: Debounce | None = None
    batch_events: BatchEvents | None = None
    priority_run: str | None = None
    cancel: tuple[CancelOn, ...] = ()
    timeouts: Timeouts | None = None
    singleton: Singleton | None = None
    #: The config object exactly as received; treat as read-only.
    raw: Mapping[str, Any]

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @property
    def event_triggers(self) -> tuple[EventTrigger, ...]:
        return tuple(t for t in self.triggers if isinstance(t, EventTrigger))

    @property
    def cron_triggers(self) -> tuple[CronTrigger, ...]:
        return tuple(t for t in self.triggers if isinstance(t, CronTrigger))


def trigger_patterns(event_name: str) -> list[str]:
    """The trigger names ``event_name`` matches: itself, ``a/*`` and ``a/b.*`` prefixes."""
    patterns = [event_name]
    for sep in ("/", "."):
        parts = event_name.split(sep)
        patterns += [sep.join(parts[: n + 1]) + sep + "*" for n in range(len(parts) - 1)]
    return patterns


def expand_cron(expr: str) -> tuple[str | None, str]:
    """``(timezone, five-field spec)`` of a cron string; descriptors are expanded."""
    text = expr.strip()
    tz: str | None = None
    if match := _CRON_TZ.fullmatch(text):
        tz, text = match.group(1), match.group(2).strip()
    return tz, CRON_DESCRIPTORS.get(text.lower(), text)


def check_cron_shape(expr: str) -> None:
    """Raise ValueError unless ``expr`` has a known timezone and five plausible fields."""
    tz, spec = expand_cron(expr)
    if tz is not None:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
    fields = spec.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise ValueError("expected five fields: minute hour day-of-month month day-of-week")


def parse_function_config(
    raw: Any,
    *,
    validate_expression: Callable[[str], None],
    index: int = 0,
    validate_cron: Callable[[str], None] | None = None,
) -> FunctionConfig:
    """Parse and validate one synced function config.

    ``validate_expression`` and ``validate_cron`` raise ``ValueError`` for a bad expression or
    schedule; the message becomes part of the ``InvalidFunctionConfig``.
    """
    parser = _Parser(f"functions[{index}]", validate_expression, validate_cron)
    return parser.function(raw)


def _fold(obj: Mapping[str, Any]) -> dict[str, Any]:
    # Null and absent mean the same to every SDK; later spellings of a key win, as in Go.
    return {str(k).lower(): v for k, v in obj.items() if v is not None}


def _ms(td: timedelta) -> int:
    return td // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class _Parser:
    path: str
    check_expression: Callable[[str], None]
    check_cron: Callable[[str], None] | None

    def fail(self, field: str, message: str) -> InvalidFunctionConfig:
        return InvalidFunctionConfig(f"{self.path}.{field}" if field else self.path, message)

    # --- typed accessors ---

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(field, "must be an object")
        return _fold(value)

    def items(self, value: Any, field: str, limit: int) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(field, "must be a list")
        if len(value) > limit:
            raise self.fail(field, f"at most {limit} entries are allowed, got {len(value)}")
        return value

    def text(self, value: Any, field: str) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail(field, "must be a string")
        return value

    def required(self, value: Any, field: str) -> str:
        text = self.text(value, field)
        if text is None:
            raise self.fail(field, "is required")
        return text

    def integer(self, value: Any, field: str, *, default: int | None = None) -> int:
        if value is None and default is not None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, "must be an integer")
        return value

    def expression(self, value: Any, field: str) -> str | None:
        source = self.text(value, field)
        if source is not None:
            try:
                self.check_expression(source)
            except ValueError as exc:
                raise self.fail(field, f"invalid expression: {exc}") from None
        return source

    def duration(
        self, value: Any, field: str, *, low: timedelta | None = None, high: timedelta | None = None
    ) -> int:
        """A duration string in milliseconds; positive, or at least ``low`` when given."""
        try:
            td = parse_duration(self.required(value, field))
        except InvalidDuration as exc:
            raise self.fail(field, str(exc)) from None
        if (td < low) if low is not None else (td <= timedelta(0)):
            raise self.fail(field, f"must be at least {low}" if low else "must be positive")
        if high is not None and td > high:
            raise self.fail(field, f"must be at most {high}")
        return _ms(td)

    def optional_duration(self, value: Any, field: str) -> int | None:
        return None if value is None else self.duration(value, field)

    # --- sections ---

    def function(self, raw: Any) -> FunctionConfig:
        obj = self.obj(raw, "")
        idempotency = self.expression(obj.get("idempotency"), "idempotency")
        rate_limit = self.rate_limit(obj.get("ratelimit"))
        if idempotency is not None:
            rate_limit = RateLimit(limit=1, period_ms=IDEMPOTENCY_PERIOD_MS, key=idempotency)
        step_url, runtime_type, retries = self.step(obj.get("steps"), obj.get("retries"))
        config = FunctionConfig(
            slug=self.required(obj.get("id"), "id"),
            name=self.required(obj.get("name"), "name"),
            triggers=self.triggers(obj.get("triggers")),
            step_url=step_url,
            runtime_type=runtime_type,
            retries=retries,
            concurrency=self.concurrency(obj.get("concurrency")),
            rate_limit=rate_limit,
            idempotency=idempotency,
            throttle=self.throttle(obj.get("throttle")),
            debounce=self.debounce(obj.get("debounce")),
            batch_events=self.batch(obj.get("batchevents")),
            priority_run=self.priority(obj.get("priority")),
            cancel=self.cancels(obj.get("cancel")),
            timeouts=self.timeouts(obj.get("timeouts")),
            singleton=self.singleton(obj.get("singleton")),
            raw=raw,
        )
        self.check_batch_combinations(config)
        return config

    def step(self, value: Any, fn_retries: Any) -> tuple[str, str, int]:
        if not isinstance(value, Mapping) or len(value) != 1:
            raise self.fail("steps", "a function must have exactly one step")
        key, step = next(iter(value.items()))
        field = f"steps.{key}"
        step_obj = self.obj(step, field)
        runtime = self.obj(step_obj.get("runtime"), f"{field}.runtime")
        url = self.required(runtime.get("url"), f"{field}.runtime.url")
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in STEP_SCHEMES:
            raise self.fail(f"{field}.runtime.url", f"unsupported URL scheme {scheme!r}")
        default_type = "ws" if scheme in ("ws", "wss") else "http"
        runtime_type = self.text(runtime.get("type"), f"{field}.runtime.type") or default_type
        if runtime_type not in ("http", "ws"):
            raise self.fail(f"{field}.runtime.type", "must be http or ws")
        # Step-level attempts win; the function-level number is the Go SDK's shorthand.
        if step_obj.get("retries") is not None:
            attempts = self.obj(step_obj["retries"], f"{field}.retries").get("attempts")
            retries = self.integer(attempts, f"{field}.retries.attempts")
        else:
            retries = self.integer(fn_retries, "retries", default=DEFAULT_RETRIES)
        return url, runtime_type, min(max(retries, 0), MAX_RETRIES)

    def triggers(self, value: Any) -> tuple[Trigger, ...]:
        out: list[Trigger] = []
        seen: set[tuple[str, str, str | None]] = set()
        for i, item in enumerate(self.items(value, "triggers", MAX_TRIGGERS)):
            trigger = self.trigger(item, f"triggers[{i}]")
            key = (
                ("event", trigger.event, trigger.expression)
                if isinstance(trigger, EventTrigger)
                else ("cron", trigger.cron, None)  # jitter does not make a schedule distinct
            )
            if key in seen:
                raise self.fail(f"triggers[{i}]", "duplicate trigger")
            seen.add(key)
            out.append(trigger)
        return tuple(out)

    def trigger(self, value: Any, field: str) -> Trigger:
        obj = self.obj(value, field)
        if "event" in obj and "cron" in obj:
            raise self.fail(field, "a trigger cannot have both an event and a cron")
        if "cron" in obj:
            return self.cron(obj, field)
        if "event" not in obj:
            raise self.fail(field, "a trigger needs an event name or a cron schedule")
        event = self.required(obj["event"], f"{field}.event")
        if len(event) > MAX_EVENT_NAME:
            raise self.fail(f"{field}.event", f"is longer than {MAX_EVENT_NAME} characters")
        expression = self.expression(obj.get("expression"), f"{field}.expression")
        return EventTrigger(event=event, expression=expression)

    def cron(self, obj: dict[str, Any], field: str) -> CronTrigger:
        cron = self.required(obj["cron"], f"{field}.cron")
        try:
            if len(cron) > MAX_CRON_LENGTH:
                raise ValueError(f"is longer than {MAX_CRON_LENGTH} characters")
            check_cron_shape(cron)
            if self.check_cron is not None:
                self.check_cron(cron)
        except ValueError as exc:
            raise self.fail(f"{field}.cron", f"invalid cron schedule {cron!r}: {exc}") from None
        jitter = self.text(obj.get("jitter"), f"{field}.jitter")
        if jitter is not None:
            try:
                td = parse_duration(jitter)
            except InvalidDuration as exc:
                raise self.fail(f"{field}.jitter", str(exc)) from None
            if td and not _SECOND <= td <= 300 * _SECOND:
                raise self.fail(f"{field}.jitter", "must be between 1s and 5m")
        return CronTrigger(cron=cron, jitter=jitter)

    def concurrency(self, value: Any) -> tuple[ConcurrencyLimit, ...]:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (self.limit({"limit": value}, "concurrency"),)
        if isinstance(value, Mapping):
            return (self.limit(value, "concurrency"),)
        entries = self.items(value, "concurrency", MAX_CONCURRENCY_LIMITS)
        return tuple(self.limit(v, f"concurrency[{i}]") for i, v in enumerate(entries))

    def limit(self, value: Any, field: str) -> ConcurrencyLimit:
        obj = self.obj(value, field)
        limit = self.integer(obj.get("limit"), f"{field}.limit")
        if limit < 0:
            raise self.fail(f"{field}.limit", "must not be negative")
        scope = self.text(obj.get("scope"), f"{field}.scope") or "fn"
        if scope not in CONCURRENCY_SCOPES:
            raise self.fail(f"{field}.scope", "must be fn, env or account")
        key = self.expression(obj.get("key"), f"{field}.key")
        if scope != "fn" and key is None:
            raise self.fail(f"{field}.key", f"a key is required for {scope}-scoped limits")
        return ConcurrencyLimit(limit=limit, key=key, scope=scope)

    def rate_limit(self, value: Any) -> RateLimit | None:
        if value is None:
            return None
        obj = self.obj(value, "rateLimit")
        limit = self.integer(obj.get("limit"), "rateLimit.limit")
        if limit <= 0:
            raise self.fail("rateLimit.limit", "must be greater than 0")
        day = timedelta(milliseconds=IDEMPOTENCY_PERIOD_MS)
        return RateLimit(
            limit=limit,
            period_ms=self.duration(obj.get("period"), "rateLimit.period", high=day),
            key=self.expression(obj.get("key"), "rateLimit.key"),
        )

    def throttle(self, value: Any) -> Throttle | None:
        if value is None:
            return None
        obj = self.obj(value, "throttle")
        limit = self.integer(obj.get("limit"), "throttle.limit")
        burst = self.integer(obj.get("burst"), "throttle.burst", default=1)
        if limit < 0 or burst < 0:
            raise self.fail("throttle", "limit and burst must not be negative")
        return Throttle(
            limit=max(limit, 1),  # as Go normalises an unset limit
            period_ms=self.duration(obj.get("period"), "throttle.period"),
            burst=max(burst, 1),
            key=self.expression(obj.get("key"), "throttle.key"),
        )

    def debounce(self, value: Any) -> Debounce | None:
        if value is None:
            return None
        obj = self.obj(value, "debounce")
        week = timedelta(days=7)
        return Debounce(
            period_ms=self.duration(obj.get("period"), "debounce.period", low=_SECOND, high=week),
            key=self.expression(obj.get("key"), "debounce.key"),
            timeout_ms=self.optional_duration(obj.get("timeout"), "debounce.timeout"),
        )

    def batch(self, value: Any) -> BatchEvents | None:
        if value is None:
            return None
        obj = self.obj(value, "batchEvents")
        max_size = self.integer(obj.get("maxsize", obj.get("max_size")), "batchEvents.maxSize")
        if max_size < 2:
            raise self.fail("batchEvents.maxSize", "must be at least 2")
        return BatchEvents(
            max_size=max_size,
            timeout_ms=self.duration(obj.get("timeout"), "batchEvents.timeout", low=_SECOND),
            key=self.expression(obj.get("key"), "batchEvents.key"),
            if_expr=self.expression(obj.get("if"), "batchEvents.if"),
        )

    def priority(self, value: Any) -> str | None:
        if value is None:
            return None
        return self.expression(self.obj(value, "priority").get("run"), "priority.run")

    def cancels(self, value: Any) -> tuple[CancelOn, ...]:
        entries = self.items(value, "cancel", MAX_CANCELS)
        return tuple(self.cancel(v, f"cancel[{i}]") for i, v in enumerate(entries))

    def cancel(self, value: Any, field: str) -> CancelOn:
        obj = self.obj(value, field)
        timeout = self.text(obj.get("timeout"), f"{field}.timeout")
        if timeout is not None and parse_date(timeout) is None:
            self.duration(timeout, f"{field}.timeout")  # a date (TS sends Dates) or a duration
        return CancelOn(
            event=self.required(obj.get("event"), f"{field}.event"),
            if_expr=self.expression(obj.get("if"), f"{field}.if"),
            timeout=timeout,
        )

    def timeouts(self, value: Any) -> Timeouts | None:
        if value is None:
            return None
        obj = self.obj(value, "timeouts")
        return Timeouts(
            start_ms=self.optional_duration(obj.get("start"), "timeouts.start"),
            finish_ms=self.optional_duration(obj.get("finish"), "timeouts.finish"),
        )

    def singleton(self, value: Any) -> Singleton | None:
        if value is None:
            return None
        obj = self.obj(value, "singleton")
        mode = self.required(obj.get("mode"), "singleton.mode")
        if mode not in SINGLETON_MODES:
            raise self.fail("singleton.mode", "must be skip or cancel")
        return Singleton(mode=mode, key=self.expression(obj.get("key"), "singleton.key"))

    def check_batch_combinations(self, config: FunctionConfig) -> None:
        if config.batch_events is None:
            return
        for present, other in (
            (config.cancel, "cancellation"),
            (config.debounce, "debouncing"),
            (config.singleton, "singletons"),
            (config.priority_run, "priority.run"),
        ):
            if present:
                raise self.fail("batchEvents", f"batching and {other} are mutually exclusive")
