"""Queue handlers for a run's own items: SDK calls (start/edge), sleeps, pause timeouts.

A call item is executed by loading the run (from the worker's run cache when its copy is
current, else one query + fold), calling the SDK with the request of protocol §2.1 while the
worker keeps the lease alive, and committing the decided transition — which acks the item — in
one transaction.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.drivers import gateway
from app.drivers import http as driver
from app.engine.cancellations import cancel_reason, matching_rule
from app.engine.pauses import catch_up_wait
from app.engine.run_cache import Snapshot
from app.engine.transitions import apply_command, handoff_lease, run_command
from app.registry.store import function_at_version, function_by_slug_or_id
from app.store.db import LazyConnection
from app.store.history import load_history
from app.store.queue import ack_item
from domain import commands as c
from domain.effects import CreatePause
from domain.opcodes import CallFailed, CallResult, OpsReported
from domain.parking import INVOKE_TIMEOUT_ERROR
from domain.queue import ClaimedItem

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)


async def execute_call(services: Services, item: ClaimedItem) -> ClaimedItem | None:
    """Run one SDK call of a run; returns the run's next call if it was handed to this worker."""
    run_id = str(item.run_id)
    step_id = str(item.payload.get("step_id") or "step")
    snap = services.runs.get(run_id, item.run_version)
    # With the run's snapshot and its function in memory (the usual step), no connection is
    # taken before the commit.
    async with LazyConnection(services.db) as lazy:
        if snap is None:
            snap = Snapshot.of(run_id, await load_history(await lazy.get(), run_id))
        state = snap.state
        if not state.exists or state.is_finished or step_id in state.steps:
            await ack_item(await lazy.get(), item)  # nothing left to do for this item
            return None
        rule = await matching_rule(lazy, state)  # a bulk cancellation covers this run
        if rule is not None:
            await run_command(
                services,
                run_id,
                c.CancelRun(reason=cancel_reason(rule)),
                claimed=item,
                snapshot=snap,
                conn=await lazy.get(),
            )
            return None
        fn = await services.functions.get(
            lazy, state.function_id, function_by_slug_or_id
        ) or await function_at_version(await lazy.get(), state.function_id, state.function_version)
    started = services.clock.now_ms()
    if state.started_at is None:
        # The run counts as started when its first attempt begins (timeouts.start, the
        # Running status), not when that attempt returns.
        marked = await apply_command(services, run_id, c.MarkStarted(at=started), snapshot=snap)
        assert marked.snapshot is not None  # no claimed item: the lease cannot be lost
        snap = marked.snapshot
        state = snap.state
        if state.is_finished:
            async with services.db.connection() as conn:
                await ack_item(conn, item)
            return None
    if fn is None:
        result: CallResult = CallFailed(
            error={"name": "Error", "message": f"function {state.function_slug} not found"},
            retryable=False,
        )
    else:
        request = driver.build_request(
            state,
            base_url=fn.config.step_url,
            step_id=step_id,
            attempt=item.attempt,
            job_id=item.job_id,
            item_id=item.id,
            server_kind=services.server_kind,
            signing_key=services.settings.signing_key,
        )
        result = await driver.call(
            services.client,
            request,
            services.clock.now_ms(),
            signing_keys=services.settings.response_keys,
        )
        if isinstance(result, OpsReported):
            # step.fetch / step.ai.infer: the server makes the request, under this item's lease.
            result = await gateway.perform_ops(services.outbound, result, state.steps)
    call = c.Call(
        step_id=step_id, attempt=item.attempt, max_attempts=state.max_attempts, started_at=started
    )
    applied = await apply_command(
        services,
        run_id,
        c.HandleCallResult(call=call, result=result),
        claimed=item,
        snapshot=snap,
        handoff=handoff_lease(services),
    )
    if applied.decision is not None:
        for effect in applied.decision.effects:
            if isinstance(effect, CreatePause) and effect.kind == "wait":
                await catch_up_wait(services, effect)
    return applied.handoff


async def execute_sleep(services: Services, item: ClaimedItem) -> None:
    await run_command(
        services, str(item.run_id), c.WakeSleep(step_id=str(item.payload["step_id"])), claimed=item
    )


async def execute_pause_timeout(services: Services, item: ClaimedItem) -> None:
    step_id = str(item.payload["step_id"])
    command: c.Command
    if item.payload.get("pause_kind") == "invoke":
        command = c.CompleteInvoke(
            step_id=step_id, output={"error": INVOKE_TIMEOUT_ERROR}, timed_out=True
        )
    else:
        command = c.TimeOutWait(step_id=step_id)
    await run_command(services, str(item.run_id), command, claimed=item)


async def execute_timeout(services: Services, item: ClaimedItem) -> None:
    """A ``timeouts.start``/``timeouts.finish`` deadline passed: cancel the run if it applies."""
    kind = str(item.payload.get("timeout") or "finish")
    await run_command(services, str(item.run_id), c.EnforceTimeout(kind=kind), claimed=item)
