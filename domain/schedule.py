"""Deciding a new run: its ``RunScheduled`` record and everything that starts with it.

Besides the start item, a run may begin with cancelOn pauses (``event.*`` values inlined, only
events received after the run was scheduled count) and a start-timeout item; a run scheduled
with a ``skip_reason`` (a held singleton) is recorded and immediately skipped.  Queue scores
follow semantics §3.7-3.8: items due soon are ordered by run age minus the priority factor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from domain import commands as c
from domain import durations
from domain import history as h
from domain.effects import CreatePause, Decision, Effect, Enqueue
from domain.ids import deterministic_uuid, ulid_ms
from domain.queue import DISCOVERY_STEP, ItemKind, ItemSpec, start_job_id, step_job_id
from domain.run import RunState

if TYPE_CHECKING:
    from domain.decide import DecideContext

CANCEL_DEFAULT_TIMEOUT = timedelta(days=365)


def score(run_id: str, priority: int, at: int, now: int) -> int:
    if at <= now + 2000:
        return ulid_ms(run_id) - priority * 1000
    return at


def schedule(state: RunState, cmd: c.ScheduleRun, ctx: DecideContext) -> Decision:
    if state.exists:
        return Decision([], [])  # a duplicate schedule of the same run changes nothing
    scheduled = h.RunScheduled(
        at=ctx.now_ms,
        run_id=cmd.run_id,
        function_id=cmd.function_id,
        function_slug=cmd.function_slug,
        function_version=cmd.function_version,
        app_id=cmd.app_id,
        events=cmd.events,
        event_ids=cmd.event_ids,
        idempotency_key=cmd.idempotency_key,
        max_attempts=cmd.max_attempts,
        batch_id=cmd.batch_id,
        cron=cmd.cron,
        priority=cmd.priority,
        original_run_id=cmd.original_run_id,
        steps=dict(cmd.steps),
        concurrency=cmd.concurrency,
        start_timeout_ms=cmd.start_timeout_ms,
        finish_timeout_ms=cmd.finish_timeout_ms,
    )
    if cmd.skip_reason is not None:
        return Decision([scheduled, h.RunSkipped(at=ctx.now_ms, reason=cmd.skip_reason)], [])
    at = max(ctx.now_ms, cmd.not_before or 0)
    effects: list[Effect] = [
        Enqueue(
            item=ItemSpec(
                kind=ItemKind.START,
                job_id=start_job_id(cmd.function_id, cmd.idempotency_key),
                available_at=at,
                run_id=cmd.run_id,
                function_id=cmd.function_id,
                payload={"step_id": DISCOVERY_STEP},
                max_attempts=cmd.max_attempts,
                score=score(cmd.run_id, cmd.priority, at, ctx.now_ms),
                concurrency=cmd.concurrency,
            )
        )
    ]
    if cmd.start_timeout_ms is not None:
        state_like = RunState(run_id=cmd.run_id, function_id=cmd.function_id)
        deadline = ulid_ms(cmd.run_id) + cmd.start_timeout_ms
        effects.append(Enqueue(item=timeout_item(state_like, "start", deadline)))
    effects.extend(_cancel_pauses(cmd, ctx))
    return Decision([scheduled], effects)


def timeout_item(state: RunState, kind: str, at: int) -> ItemSpec:
    """The eager ``cancel`` item that enforces ``timeouts.start`` / ``timeouts.finish``."""
    return ItemSpec(
        kind=ItemKind.CANCEL,
        job_id=step_job_id(state.run_id, f"{kind}-timeout", state.run_id),
        available_at=at,
        run_id=state.run_id,
        function_id=state.function_id,
        payload={"timeout": kind},
        max_attempts=21,
    )


def _cancel_pauses(cmd: c.ScheduleRun, ctx: DecideContext) -> list[Effect]:
    if cmd.batch_id is not None or not cmd.events:
        return []  # batched runs get no cancellation pauses (semantics §3.6)
    trigger = cmd.events[0]
    pauses: list[Effect] = []
    for index, (event_name, if_expr, timeout) in enumerate(cmd.cancel_on):
        try:
            expression = ctx.interpolate(if_expr, trigger) if if_expr else None
        except ValueError:
            # This trigger's values make the condition impossible to evaluate (too long or
            # too deep once filled in): like ``false``, it can never match.
            continue
        if expression is not None and expression.strip() == "false":
            continue  # can never match: Inngest creates no pause for it
        expires = durations.deadline_ms(ctx.now_ms, timeout, CANCEL_DEFAULT_TIMEOUT)
        pauses.append(
            CreatePause(
                pause_id=deterministic_uuid(f"{cmd.run_id}-cancel-{index}-{event_name}"),
                run_id=cmd.run_id,
                step_id=f"cancel-{index}",
                kind="cancel",
                event_name=event_name,
                expression=expression,
                expires_at=expires if expires is not None else ctx.now_ms,
                created_at=ctx.now_ms,
                source_event_id=cmd.event_ids[0] if cmd.event_ids else None,
            )
        )
    return pauses
