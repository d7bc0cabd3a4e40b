"""Function pages: the list with triggers and flow control, a function's page with its
configuration, counts and recent runs, and invoking it with a JSON payload.

Counts come from the ``function_stats`` projection (hourly rows kept by the stats tailer, a
second or so behind; summed by ``app.ui.counts``), never from counting runs.  ``flow_control``
turns a synced ``FunctionConfig`` into the label/value lines both pages show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from app.registry import store as registry
from app.store.stats import FunctionStats
from app.ui import actions, runs_data
from app.ui.counts import function_counts
from app.ui.render import duration, not_found, now_ms, page, redirect, services_of
from domain.function_config import EventTrigger, FunctionConfig

DEFAULT_PAYLOAD = "{\n  \n}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionItem:
    record: registry.FunctionRecord
    triggers: list[str]
    flow: list[tuple[str, str]]
    stats: FunctionStats | None


def _keyed(text: str, key: str | None) -> str:
    return f"{text}, key {key}" if key else text


def triggers(config: FunctionConfig) -> list[str]:
    found = []
    for t in config.triggers:
        if isinstance(t, EventTrigger):
            found.append(f"{t.event} if {t.expression}" if t.expression else t.event)
        else:
            found.append(f"cron {t.cron}" + (f" (jitter {t.jitter})" if t.jitter else ""))
    return found


def flow_control(c: FunctionConfig) -> list[tuple[str, str]]:
    """``(label, value)`` for every flow-control setting the function has."""
    lines = [("concurrency", _keyed(f"{x.limit} per {x.scope}", x.key)) for x in c.concurrency]
    if c.throttle:
        t = c.throttle
        text = f"{t.limit} per {duration(t.period_ms)}, burst {t.burst}"
        lines.append(("throttle", _keyed(text, t.key)))
    if c.rate_limit:
        r = c.rate_limit
        lines.append(("rate limit", _keyed(f"{r.limit} per {duration(r.period_ms)}", r.key)))
    if c.debounce:
        d = c.debounce
        text = duration(d.period_ms) + (
            f", at most {duration(d.timeout_ms)}" if d.timeout_ms else ""
        )
        lines.append(("debounce", _keyed(text, d.key)))
    if c.batch_events:
        b = c.batch_events
        text = f"up to {b.max_size} events or {duration(b.timeout_ms)}"
        lines.append(("batch", _keyed(text, b.key)))
    if c.priority_run:
        lines.append(("priority", c.priority_run))
    if c.idempotency:
        lines.append(("idempotency", c.idempotency))
    if c.singleton:
        lines.append(("singleton", _keyed(c.singleton.mode, c.singleton.key)))
    for x in c.cancel:
        text = x.event + (f" if {x.if_expr}" if x.if_expr else "")
        lines.append(("cancel on", text + (f" within {x.timeout}" if x.timeout else "")))
    if c.timeouts and c.timeouts.start_ms is not None:
        lines.append(("start timeout", duration(c.timeouts.start_ms)))
    if c.timeouts and c.timeouts.finish_ms is not None:
        lines.append(("finish timeout", duration(c.timeouts.finish_ms)))
    lines.append(("retries", str(c.retries)))
    return lines


def _item(record: registry.FunctionRecord, stats: FunctionStats | None) -> FunctionItem:
    c = record.config
    return FunctionItem(record=record, triggers=triggers(c), flow=flow_control(c), stats=stats)


@get("/functions", name="ui-functions")
async def functions_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Active functions with triggers, flow control and their last 24 hours of runs."""
    since = datetime.fromtimestamp(now_ms(request) / 1000, UTC) - timedelta(days=1)
    async with services_of(request).read_db.connection() as conn:
        records = await registry.list_functions(conn)
        stats = await function_counts(conn, since=since)
    items = [_item(r, stats.get(r.id)) for r in records]
    return page(request, "functions.html", items=items)


async def _function(request: Request[Any, Any, Any], slug: str) -> registry.FunctionRecord | None:
    async with services_of(request).read_db.connection() as conn:
        records = await registry.list_functions(conn, include_archived=True)
    return next((r for r in records if slug in (r.slug, r.id)), None)


async def _render(
    request: Request[Any, Any, Any],
    record: registry.FunctionRecord,
    *,
    payload: str = DEFAULT_PAYLOAD,
    form_error: str | None = None,
) -> Response[Any]:
    services, now = services_of(request), now_ms(request)
    since = datetime.fromtimestamp(now / 1000, UTC) - timedelta(days=1)
    async with services.read_db.connection() as conn:
        all_time = await function_counts(conn, function_id=record.id)
        day = await function_counts(conn, function_id=record.id, since=since)
    runs = await runs_data.recent_runs(services, record.id, now)
    return page(
        request, "function.html", fragment="_function_live.html",
        status=200 if form_error is None else 400,
        fn=_item(record, all_time.get(record.id)), day=day.get(record.id),
        runs=runs, payload=payload, form_error=form_error,
    )  # fmt: skip


@get("/functions/{slug:str}", name="ui-function")
async def function_page(request: Request[Any, Any, Any], slug: FromPath[str]) -> Response[Any]:
    """A function: configuration, counts (all time and last 24 h), recent runs, invoke."""
    record = await _function(request, slug)
    if record is None:
        return not_found(request, f"function {slug}")
    return await _render(request, record)


@post("/functions/{slug:str}/invoke", status_code=303)
async def invoke(request: Request[Any, Any, Any], slug: FromPath[str]) -> Response[Any]:
    """Invoke the function with the form's JSON payload (as ``event.data``)."""
    record = await _function(request, slug)
    if record is None:
        return not_found(request, f"function {slug}")
    payload = str((await request.form()).get("payload") or "")
    try:
        event_id = await actions.invoke_function(services_of(request), record.slug, payload)
    except actions.FormError as exc:
        return await _render(request, record, payload=payload, form_error=str(exc))
    return redirect(f"/events/{event_id}", notice=f"Invoked {record.name}.")


ROUTES = [functions_page, function_page, invoke]
