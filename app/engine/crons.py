"""Cron triggers: durable ticks on the queue, fire times from APScheduler's cron trigger.

For every active cron trigger the next tick is a ``cron`` queue item whose job id is derived
from (function, version, expression, scheduled time): however many Stepwell instances compute
it, the queue holds it once.  Handling a tick emits ``inngest/scheduled.timer`` (id = the
scheduled time, RFC 3339), schedules the run with that id as its idempotency key — so even a
tick enqueued twice (a clock-skewed instance re-creating one already fired) starts one run —
and enqueues the following tick, all in one transaction.  A re-sync that changes the
function's version or expressions ends the old chain (its next tick sees the mismatch) and
``ensure_ticks`` starts the new one.

APScheduler numbers weekdays from Monday; cron numbers them from Sunday.  The day-of-week
field is therefore rewritten to names before it reaches APScheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from app.engine.scheduling import RunRequest, schedule_run
from app.registry.store import FunctionRecord, cron_functions, function_by_slug_or_id
from app.store.events import insert_events
from app.store.queue import ack_item, enqueue_items, to_dt
from domain import flow
from domain.durations import parse_duration
from domain.function_config import expand_cron
from domain.ids import new_ulid
from domain.queue import ClaimedItem, ItemKind, ItemSpec

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)
TIMER_EVENT = "inngest/scheduled.timer"
ENSURE_INTERVAL_S = 10.0
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    token = token.strip().lower()
    return _DAYS.index(token[:3]) if token[:3] in _DAYS else int(token) % 7


def _weekday_names(field: str) -> str:
    """A cron day-of-week field (0 or 7 = Sunday) as explicit APScheduler day names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span in ("*", "?"):
            lo, hi = 0, 6
        elif "-" in span:
            lo_text, hi_text = span.split("-", 1)
            lo, hi = _day(lo_text), _day(hi_text) or 7  # "5-0" / "1-7" end on Sunday
        else:
            lo = hi = _day(span)
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


@lru_cache(maxsize=1024)
def cron_trigger(expression: str) -> CronTrigger:
    tz, spec = expand_cron(expression)
    minute, hour, day, month, dow = spec.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_weekday_names(dow),
        timezone=ZoneInfo(tz or "UTC"),
    )


def next_fire(expression: str, after: datetime) -> datetime:
    """The first scheduled time strictly after ``after``."""
    nxt = cron_trigger(expression).get_next_fire_time(None, after + timedelta(microseconds=1))
    if not isinstance(nxt, datetime):
        raise ValueError(f"cron expression {expression!r} never fires again")
    return nxt.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tick_item(
    fn: FunctionRecord, expression: str, jitter: str | None, scheduled: datetime
) -> ItemSpec:
    job_id = f"cron:{fn.id}:{fn.version}:{expression}:{rfc3339(scheduled)}"
    jitter_ms = int(parse_duration(jitter).total_seconds() * 1000) if jitter else 0
    fire_ms = int(scheduled.timestamp() * 1000) + flow.cron_jitter_ms(job_id, jitter_ms)
    return ItemSpec(
        kind=ItemKind.CRON,
        job_id=job_id,
        available_at=fire_ms,
        function_id=fn.id,
        payload={
            "function_id": fn.id,
            "version": fn.version,
            "cron": expression,
            "jitter": jitter,
            "scheduled_at": rfc3339(scheduled),
        },
        max_attempts=21,
    )


async def ensure_ticks(services: Services) -> int:
    """Make sure each active cron trigger has its next tick queued; returns ticks enqueued."""
    now = datetime.fromtimestamp(services.clock.now_ms() / 1000, UTC)
    async with services.db.connection() as conn:
        items = []
        for fn in await cron_functions(conn):
            for trigger in fn.config.cron_triggers:
                try:
                    scheduled = next_fire(trigger.cron, now)
                except ValueError as exc:
                    log.warning("cron of %s: %s", fn.slug, exc)
                    continue
                items.append(tick_item(fn, trigger.cron, trigger.jitter, scheduled))
        return await enqueue_items(conn, items, services.clock.now_ms())


def _current(fn: FunctionRecord | None, payload: Any) -> bool:
    return (
        fn is not None
        and fn.version == payload["version"]
        and any(t.cron == payload["cron"] for t in fn.config.cron_triggers)
    )


async def handle_cron(services: Services, item: ClaimedItem) -> None:
    payload = item.payload
    async with services.db.connection() as conn, conn.transaction():
        fn = await function_by_slug_or_id(conn, str(payload["function_id"]))
        if fn is None or not _current(fn, payload):
            await ack_item(conn, item)  # archived or re-synced: this chain ends here
            return
        now = services.clock.now_ms()
        scheduled_at = str(payload["scheduled_at"])
        fire_at = datetime.fromtimestamp(now / 1000, UTC)
        event = {
            "name": TIMER_EVENT,
            "id": scheduled_at,
            "user": {},
            "ts": now,
            "data": {
                "cron": payload["cron"],
                "scheduledAt": scheduled_at,
                "fireAt": rfc3339(fire_at),
            },
        }
        internal_id = new_ulid(now)
        run_id = await schedule_run(
            services,
            conn,
            fn,
            RunRequest(
                events=[event],
                event_ids=[internal_id],
                idempotency_key=scheduled_at,
                cron=str(payload["cron"]),
            ),
        )
        if run_id is not None:
            await insert_events(
                conn, [(internal_id, event)], to_dt(now), now, source="cron", process=False
            )
        scheduled = datetime.fromisoformat(scheduled_at.replace("Z", "+00:00"))
        following = tick_item(
            fn,
            str(payload["cron"]),
            payload.get("jitter"),
            next_fire(str(payload["cron"]), scheduled),
        )
        await enqueue_items(conn, [following], now)
        await ack_item(conn, item)


async def run_cron_loop(services: Services) -> None:
    """Keep every cron trigger's next tick queued (at start, then every few seconds)."""
    while not services.stop.is_set():
        try:
            await ensure_ticks(services)
        except Exception:
            log.exception("scheduling cron ticks failed; retrying")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(services.stop.wait(), ENSURE_INTERVAL_S)
