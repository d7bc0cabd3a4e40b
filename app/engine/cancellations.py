"""Bulk cancellation: create a rule, cancel the runs it covers, and keep catching stragglers.

A rule covers the runs of one function queued inside its window (``started_after`` …
``started_before``, inclusive; the queue time is the run id's time, as upstream) whose first
trigger event satisfies its CEL ``if`` (variable ``event``).  Creating one cancels, through
``run_command`` and ``CancelRun`` like any other cancel, every covered run that has not ended,
before the API answers.  A run the sweep cannot see yet — its ``RunScheduled`` still
uncommitted, or a window reaching a few seconds into the future — is caught by
``matching_rule``, which the executor asks before every SDK call.

That check is on the hot path, so a function's rules are cached for ``CACHE_SECONDS``: one
indexed query per function per interval.  Creating or deleting a rule drops this process's
cache entry at once; other processes see the change within the interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from app import expressions
from app.engine.evaluation import holds
from app.engine.transitions import run_command
from app.store import cancellations as repo
from app.store.cancellations import Cancellation
from app.store.db import AsyncConn, LazyConnection
from app.store.queue import to_dt, to_ms
from domain import commands as c
from domain.ids import new_ulid
from domain.run import RunState

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
#: Upstream's allowance for clock skew: ``started_before`` may be this far in the future.
FUTURE_SLACK = timedelta(seconds=5)


class InvalidCancellation(ValueError):
    """The request breaks a rule of the API (its message is the client's error)."""


class FunctionNotFound(LookupError):
    """No function matches the request's app and function ids."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCancellation:
    app_id: str
    function_id: str
    started_before: datetime | None
    started_after: datetime | None = None
    expression: str | None = None


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def validate(req: NewCancellation, now: datetime) -> NewCancellation:
    """The request with times in UTC; raise ``InvalidCancellation`` listing every problem."""
    before, after = _utc(req.started_before), _utc(req.started_after)
    problems = []
    if not req.app_id:
        problems.append("app_id is required")
    if not req.function_id:
        problems.append("function_id is required")
    if before is None:
        problems.append("started_before is required")
    elif before > now + FUTURE_SLACK:
        problems.append("started_before must be in the past")
    if after is not None and before is not None and after > before:
        problems.append("started_after must be before started_before")
    if req.expression:
        try:
            expressions.validate_expression(req.expression)
        except expressions.ExpressionError as exc:
            problems.append(f"invalid expression: {exc.reason}")
    if problems:
        raise InvalidCancellation("\n".join(problems))
    return NewCancellation(
        app_id=req.app_id,
        function_id=req.function_id,
        started_before=before,
        started_after=after,
        expression=req.expression or None,
    )


async def rule_matches(
    rule: Cancellation, queued_at_ms: int, event: Mapping[str, Any]
) -> bool:
    """Whether ``rule`` covers a run of its function queued at ``queued_at_ms``."""
    if queued_at_ms > to_ms(rule.started_before):
        return False
    if rule.started_after is not None and queued_at_ms < to_ms(rule.started_after):
        return False
    return rule.expression is None or await holds(
        rule.expression, {"event": dict(event)}, context=f"bulk cancellation {rule.id}"
    )


class _RuleCache:
    """A function's rules for a short while, per database (tests run many in one process)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[float, list[Cancellation]]] = {}

    async def rules(self, conn: LazyConnection, function_id: str) -> list[Cancellation]:
        key = (conn.key, function_id)
        hit = self._entries.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        rules = await repo.rules_for_function(await conn.get(), function_id)
        self._entries[key] = (now, rules)
        return rules

    def forget(self, function_id: str) -> None:
        for key in [k for k in self._entries if k[1] == function_id]:
            del self._entries[key]


_cache = _RuleCache()


async def matching_rule(conn: LazyConnection, state: RunState) -> Cancellation | None:
    """The first rule that covers the run, if any (cached rules; see the module docstring)."""
    if not state.exists or state.is_finished or state.queued_at is None:
        return None
    rules = await _cache.rules(conn, state.function_id)
    event = state.events[0] if state.events else {}
    event = event if isinstance(event, Mapping) else {}
    for rule in rules:
        if await rule_matches(rule, state.queued_at, event):
            return rule
    return None


async def cancelled_by_rule(conn: AsyncConn, state: RunState) -> bool:
    """True if a bulk cancellation covers this run: cancel it instead of calling the SDK."""
    return await matching_rule(LazyConnection.wrap(conn), state) is not None


def cancel_reason(rule: Cancellation) -> str:
    return f"cancelled by bulk cancellation {rule.id}"


async def create_cancellation(services: Services, req: NewCancellation) -> tuple[Cancellation, int]:
    """Store the rule and cancel every run it covers; the rule and how many were cancelled."""
    now_ms = services.clock.now_ms()
    req = validate(req, to_dt(now_ms))
    assert req.started_before is not None
    async with services.db.connection() as conn:
        fn = await repo.find_function(conn, req.app_id, req.function_id)
        if fn is None:
            raise FunctionNotFound("function not found")
        rule = Cancellation(
            id=new_ulid(now_ms),
            app_id=fn.app_id,
            function_id=fn.id,
            function_slug=fn.slug,
            started_after=req.started_after,
            started_before=req.started_before,
            expression=req.expression,
            name=None,
            created_at=to_dt(now_ms),
        )
        await repo.insert_cancellation(conn, rule)
        _cache.forget(fn.id)
        run_ids = await repo.runs_in_window(conn, fn.id, rule.started_after, rule.started_before)
        if rule.expression is not None and run_ids:
            events = await repo.trigger_events(conn, run_ids)
            run_ids = [r for r in run_ids if await _event_matches(rule, events.get(r))]
    cancelled = 0
    for run_id in run_ids:
        decision = await run_command(services, run_id, c.CancelRun(reason=cancel_reason(rule)))
        cancelled += bool(decision is not None and decision.events)
    log.info("bulk cancellation %s cancelled %d run(s) of %s", rule.id, cancelled, fn.slug)
    return rule, cancelled


async def _event_matches(rule: Cancellation, event: Any) -> bool:
    assert rule.expression is not None
    data = dict(event) if isinstance(event, Mapping) else {}
    return await holds(rule.expression, {"event": data}, context=f"bulk cancellation {rule.id}")


async def list_cancellations(services: Services) -> list[Cancellation]:
    async with services.db.connection() as conn:
        return await repo.list_cancellations(conn)


async def delete_cancellation(services: Services, cancellation_id: str) -> bool:
    """Delete the rule (runs it already cancelled stay cancelled); False if it did not exist."""
    async with services.db.connection() as conn:
        function_id = await repo.delete_cancellation(conn, cancellation_id)
    if function_id is None:
        return False
    _cache.forget(function_id)
    return True
