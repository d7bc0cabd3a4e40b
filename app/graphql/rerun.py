"""Reruns: a new run of the same function with the original run's trigger events.

``rerun(services, run_id)`` schedules the new run through the ordinary ``ScheduleRun`` path
(bypassing event idempotency, which would refuse the same events twice) and points its
``original_run_id`` at the first run of the chain, so rerunning a rerun still names the run the
user started from.  ``from_step`` names a step by id or, when unambiguous, by its user-facing
name; the new run then starts with every memo the original had completed before that step
(in stack order — the order the SDK replays), so those steps are not executed again.  A step
that never completed takes the memos completed before the run first learnt of it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from app.engine.transitions import run_command
from app.graphql.errors import BadRequest, NotFound
from app.graphql.scope import Connections
from app.registry.store import function_by_slug_or_id
from app.store.history import load_history
from domain import commands as c
from domain import history as h
from domain.ids import is_ulid, new_run_id
from domain.run import RunState, fold
from projections.traces import fold_trace

if TYPE_CHECKING:
    from app.main import Services


async def rerun(
    services: Services,
    run_id: str,
    from_step: str | None = None,
    step_input: str | None = None,
    *,
    db: Connections | None = None,
) -> str:
    """Schedule the rerun and return its run id; ``db`` lends the connection (the ingest pool's
    by default, a GraphQL request's own one for the mutation)."""
    if not is_ulid(run_id):
        raise BadRequest(f"invalid run ID: {run_id!r} is not a ULID")
    if step_input is not None:
        _check_input(step_input)
    async with (db or services.ingest_db).connection() as conn:
        history = await load_history(conn, run_id)
        state = fold(history)
        if not state.exists:
            raise NotFound(f"run {run_id} not found")
        fn = await function_by_slug_or_id(conn, state.function_id)
    if fn is None:
        raise BadRequest(f"function {state.function_slug} of run {run_id} no longer exists")
    steps = memos_before(history, _resolve_step(history, from_step)) if from_step else {}
    new_id = new_run_id(services.clock.now_ms())
    command = c.ScheduleRun(
        run_id=new_id,
        function_id=fn.id,
        function_slug=fn.slug,
        function_version=fn.version,
        app_id=fn.app_id,
        events=state.events,
        event_ids=state.event_ids,
        # Unique per rerun: the start item's job id is derived from it.
        idempotency_key=f"rerun:{new_id}",
        max_attempts=fn.config.max_attempts,
        batch_id=state.batch_id,
        cron=state.cron,
        priority=state.priority,
        original_run_id=state.original_run_id or state.run_id,
        steps=steps,
    )
    await run_command(services, new_id, command)
    return new_id


def _check_input(step_input: str) -> None:
    try:
        parsed = json.loads(step_input)
    except ValueError:
        parsed = None
    if not isinstance(parsed, list):
        raise BadRequest("input is not a valid JSON array")
    # Replacing a step's input needs a memo the run state does not model yet ({"input": …}
    # is only understood by the TS SDK, and would count as the step's result here).
    raise BadRequest("rerunning a step with new input is not supported by Stepwell yet")


def _resolve_step(history: list[h.HistoryEvent], wanted: str) -> str:
    steps = [s for s in fold_trace(history).root.children if s.step_id is not None]
    # Memos a rerun started with are no spans (they did not run), but they are steps.
    if any(s.step_id == wanted for s in steps) or wanted in fold(history).steps:
        return wanted
    named = {s.step_id for s in steps if s.name == wanted and s.step_id is not None}
    if not named:
        raise BadRequest(f"rerun step not found: {wanted!r}")
    if len(named) > 1:
        raise BadRequest(f"rerun step name is ambiguous: {wanted!r} names {len(named)} steps")
    return named.pop()


def _mentions(event: h.HistoryEvent, step_id: str) -> bool:
    if isinstance(event, h.StepsPlanned):
        return any(sid == step_id for sid, _ in event.steps)
    return getattr(event, "step_id", None) == step_id


def memos_before(history: list[h.HistoryEvent], step_id: str) -> dict[str, Any]:
    """The memos (by step id, in stack order) completed before ``step_id``."""
    state: RunState = fold(history)
    if step_id in state.stack:
        done = state.stack[: state.stack.index(step_id)]
    else:
        first = next(i for i, e in enumerate(history) if _mentions(e, step_id))
        state = fold(history[:first])
        done = list(state.stack)
    return {sid: state.steps[sid] for sid in done}
