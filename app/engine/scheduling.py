"""Scheduling runs with every run-level flow-control rule applied (semantics §1.2, §3).

``schedule_run`` is the one way a run comes to exist — for an event, a debounce or batch
firing, a cron tick, an invoke or a rerun.  Inside the caller's transaction it reserves the
run idempotency key, computes the priority and concurrency buckets from the first event,
reserves a throttle slot, applies the singleton rule, then decides the ``ScheduleRun``
command and commits it.  ``rate_limited`` is the lossy check applied to incoming events.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app import expressions
from app.engine.run_cache import Snapshot
from app.engine.transitions import decide_context, handoff_lease, pause_key, run_command
from app.registry.store import FunctionRecord
from app.store import flow as repo
from app.store.db import AsyncConn
from app.store.fast_transition import commit_schedule
from app.store.flow import RESERVE_IDEMPOTENCY_KEY
from app.store.queue import to_dt
from app.store.transitions import Transition, commit_transition
from domain import commands as c
from domain import flow
from domain.decide import decide
from domain.effects import Decision
from domain.function_config import FunctionConfig
from domain.ids import ACCOUNT_ID, ENV_ID, new_run_id
from domain.queue import ClaimedItem
from domain.run import RunState

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)
IDEMPOTENCY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """What to schedule: the trigger events and where they came from."""

    events: Sequence[Mapping[str, Any]]
    event_ids: Sequence[str]
    idempotency_key: str
    batch_id: str | None = None
    cron: str | None = None
    not_before: int | None = None
    original_run_id: str | None = None
    steps: Mapping[str, Any] | None = None


def _value(expression: str, event: Mapping[str, Any]) -> Any:
    return expressions.evaluate_value(expression, {"event": event})


def _idempotency_row_key(fn: FunctionRecord, key: str) -> str:
    raw = f"{fn.id}:{key}"
    return raw if len(raw) <= 200 else f"{fn.id}:sha1:{hashlib.sha1(key.encode()).hexdigest()}"


async def rate_limited(
    conn: AsyncConn, fn: FunctionRecord, event: Mapping[str, Any], now: int
) -> bool:
    """True when ``rateLimit`` (or ``idempotency``) drops this event's run."""
    limit = fn.config.rate_limit
    if limit is None:
        return False
    key = f"rl:{fn.id}"
    if limit.key:
        try:
            value = _value(limit.key, event)
        except expressions.ExpressionError:
            log.warning("rate limit key of %s failed to evaluate; not limiting", fn.slug)
            return False
        if value is False:
            return False  # a key that evaluates to false opts the event out
        key = f"{key}:{flow.short_hash(value)}"
    decision = flow.rate_limit_check(
        await repo.lock_gcra(conn, key, now), now, limit=limit.limit, period_ms=limit.period_ms
    )
    if decision.allowed and decision.tat is not None:
        await repo.save_gcra(conn, key, decision.tat, decision.tat + limit.period_ms)
    return not decision.allowed


def concurrency_buckets(
    fn: FunctionRecord, event: Mapping[str, Any]
) -> tuple[tuple[str, int], ...]:
    buckets = []
    for limit in fn.config.concurrency:
        if limit.limit <= 0:
            continue  # 0 means "no limit" in the SDKs
        scope_id = {"fn": fn.id, "env": ENV_ID, "account": ACCOUNT_ID}.get(limit.scope, fn.id)
        value = None
        if limit.key:
            try:
                value = _value(limit.key, event)
            except expressions.ExpressionError:
                value = None
        buckets.append((flow.concurrency_key(limit.scope, scope_id, limit.key, value), limit.limit))
    return tuple(buckets)


def _priority(config: FunctionConfig, event: Mapping[str, Any]) -> int:
    if not config.priority_run:
        return 0
    try:
        return flow.clamp_priority(_value(config.priority_run, event))
    except expressions.ExpressionError:
        return 0


async def _throttle_start(
    conn: AsyncConn, fn: FunctionRecord, event: Mapping[str, Any], now: int
) -> int | None:
    throttle = fn.config.throttle
    if throttle is None:
        return None
    key = f"throttle:{fn.id}"
    if throttle.key:
        with contextlib.suppress(expressions.ExpressionError):  # bad key: function-wide
            key = f"{key}:{flow.short_hash(_value(throttle.key, event))}"
    reservation = flow.throttle_reserve(
        await repo.lock_gcra(conn, key, now),
        now,
        limit=throttle.limit,
        burst=throttle.burst,
        period_ms=throttle.period_ms,
    )
    await repo.save_gcra(conn, key, reservation.tat, reservation.tat + throttle.period_ms * 2)
    return reservation.start_at if reservation.start_at > now else None


async def _singleton(
    services: Services, conn: AsyncConn, fn: FunctionRecord, event: Mapping[str, Any], run_id: str
) -> str | None:
    """Apply ``singleton``: None to proceed, else the reason the new run is skipped."""
    rule = fn.config.singleton
    if rule is None:
        return None
    key = f"singleton:{fn.id}"
    if rule.key:
        try:
            value = _value(rule.key, event)
        except expressions.ExpressionError:
            return None  # an evaluation error ignores the singleton rule, as upstream
        if value is False:
            return None
        key = f"{key}:{flow.short_hash(value)}"
    holder = await repo.take_singleton(conn, key, run_id)
    if holder is None:
        return None
    if rule.mode == "cancel":
        await run_command(
            services, holder, c.CancelRun(reason="replaced by a singleton run"), conn=conn
        )
        if await repo.take_singleton(conn, key, run_id) is None:
            return None
    return f"Singleton: run {holder} holds the lock"


async def schedule_run(
    services: Services, conn: AsyncConn, fn: FunctionRecord, request: RunRequest
) -> str | None:
    """Create the run (in the caller's transaction); None when idempotency refused it."""
    now = services.clock.now_ms()
    run_id = new_run_id(now)
    cur = await conn.execute(RESERVE_IDEMPOTENCY_KEY, idempotency_params(fn, request, run_id, now))
    if await cur.fetchone() is None:
        return None
    decision = await _decide_new_run(services, conn, fn, request, (run_id, now))
    await commit_transition(conn, Transition(run_id, 0, None, decision, None, now), pause_key)
    # Kept for the run's first call (used only if the claim finds the run at this version,
    # i.e. the caller's transaction committed).
    services.runs.put(Snapshot.of(run_id, decision.events))
    return run_id


def idempotency_params(
    fn: FunctionRecord, request: RunRequest, run_id: str, now: int
) -> tuple[object, ...]:
    return (
        _idempotency_row_key(fn, request.idempotency_key),
        run_id,
        to_dt(now + IDEMPOTENCY_MS),
        to_dt(now),
    )


def in_one_statement(fn: FunctionRecord) -> bool:
    """Whether scheduling ``fn`` for an event needs no flow-control state: no batch, rate
    limit, debounce, throttle or singleton (their state is read and written in between) and
    no cancelOn (its pauses).  Such a run is scheduled, and the event acked, in one statement
    (``schedule_for_event``)."""
    config = fn.config
    return (
        config.batch_events is None
        and config.rate_limit is None
        and config.debounce is None
        and config.throttle is None
        and config.singleton is None
        and not config.cancel
    )


async def schedule_for_event(
    services: Services,
    conn: AsyncConn,
    fn: FunctionRecord,
    request: RunRequest,
    event_item: ClaimedItem,
) -> ClaimedItem | None:
    """Schedule ``fn``'s run (``in_one_statement(fn)`` must hold) and ack ``event_item``, in
    one statement; returns the run's first call if it was handed to this worker."""
    now = services.clock.now_ms()
    run_id = new_run_id(now)
    decision = await _decide_new_run(services, conn, fn, request, (run_id, now))
    outcome = await commit_schedule(
        conn,
        run_id=run_id,
        idempotency=idempotency_params(fn, request, run_id, now),
        decision=decision,
        event_item=event_item,
        now_ms=now,
        handoff=handoff_lease(services),
    )
    if outcome.scheduled:
        services.runs.put(Snapshot.of(run_id, decision.events))
    return outcome.handoff


async def _decide_new_run(
    services: Services,
    conn: AsyncConn,
    fn: FunctionRecord,
    request: RunRequest,
    run_at: tuple[str, int],
) -> Decision:
    """The scheduling decision for run ``run_id``, created at ``now``."""
    command = await _schedule_command(services, conn, fn, request, run_at)
    return decide(RunState(), command, decide_context(services, run_at[1]))


async def _schedule_command(
    services: Services,
    conn: AsyncConn,
    fn: FunctionRecord,
    request: RunRequest,
    run_at: tuple[str, int],
) -> c.ScheduleRun:
    run_id, now = run_at
    first = request.events[0] if request.events else {}
    config = fn.config
    throttled = None if request.batch_id else await _throttle_start(conn, fn, first, now)
    timeouts = config.timeouts
    return c.ScheduleRun(
        run_id=run_id,
        function_id=fn.id,
        function_slug=fn.slug,
        function_version=fn.version,
        app_id=fn.app_id,
        events=tuple(dict(e) for e in request.events),
        event_ids=tuple(request.event_ids),
        idempotency_key=request.idempotency_key,
        max_attempts=config.max_attempts,
        batch_id=request.batch_id,
        cron=request.cron,
        priority=_priority(config, first),
        original_run_id=request.original_run_id,
        steps=dict(request.steps or {}),
        not_before=max(request.not_before or 0, throttled or 0) or None,
        concurrency=concurrency_buckets(fn, first),
        start_timeout_ms=timeouts.start_ms if timeouts else None,
        finish_timeout_ms=timeouts.finish_ms if timeouts else None,
        cancel_on=tuple((x.event, x.if_expr, x.timeout) for x in config.cancel),
        skip_reason=await _singleton(services, conn, fn, first, run_id),
    )
