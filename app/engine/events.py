"""The event handler: what one accepted event sets in motion.

For each ``event`` queue item: resume the runs waiting on it (waitForEvent and invoke pauses,
found by (event name, equality key) — never by scanning all pauses), then in one transaction
schedule a run of every function it triggers (name, wildcard and CEL expression; or, for
``inngest/function.invoked``, the target named in ``data._inngest.fn_id``) and ack the item.
Resumes happen first and are idempotent (first write wins), so a crash in between replays
them harmlessly; scheduling is guarded by run idempotency keys, so it happens once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app import expressions
from app.engine.batching import add_to_batch, batch_applies, debounce_event
from app.engine.evaluation import holds
from app.engine.scheduling import (
    RunRequest,
    in_one_statement,
    rate_limited,
    schedule_for_event,
    schedule_run,
)
from app.engine.transitions import key_of, run_command
from app.registry.store import FunctionRecord, function_by_slug_or_id
from app.store import pauses as pause_repo
from app.store.db import AsyncConn
from app.store.events import insert_events, load_event, received
from app.store.queue import ack_item, to_ms
from domain import commands as c
from domain.function_config import trigger_patterns
from domain.ids import new_ulid
from domain.lifecycle import FINISHED, INVOKED
from domain.queue import ClaimedItem

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)


async def handle_event(services: Services, item: ClaimedItem) -> ClaimedItem | None:
    """Process one event item; returns a new run's first call if it was handed to this worker."""
    internal_id = str(item.payload["internal_id"])
    async with services.db.connection() as conn:
        loaded = await load_event(conn, internal_id)
        if loaded is None:
            log.warning("event %s vanished before processing", internal_id)
            await ack_item(conn, item)
            return None
        event, received_at, registry_version = loaded
        await _resume_pauses(services, conn, internal_id, event, received_at)
        targets = await _targets(services, conn, event, registry_version)
        if not targets and event["name"] != INVOKED:
            await ack_item(conn, item)  # triggers nothing (e.g. most function.finished events)
            return None
        if len(targets) == 1 and event["name"] != INVOKED and in_one_statement(targets[0]):
            # The common case: one function, no flow-control state to consult.
            request = run_request(internal_id, event, services.clock.now_ms())
            return await schedule_for_event(services, conn, targets[0], request, item)
        async with conn.transaction():
            for fn in targets:
                await admit_event(services, conn, fn, internal_id, event)
            if event["name"] == INVOKED and not targets:
                await _emit_invoke_not_found(services, conn, event)
            await ack_item(conn, item)
    return None


async def _targets(
    services: Services, conn: AsyncConn, event: Mapping[str, Any], registry_version: int | None
) -> list[FunctionRecord]:
    if event["name"] == INVOKED:
        meta = (event.get("data") or {}).get("_inngest") or {}
        fn = await function_by_slug_or_id(conn, str(meta.get("fn_id") or ""))
        return [fn] if fn is not None else []
    matched = []
    triggered = await services.triggers.functions_for_event(
        conn, str(event["name"]), registry_version
    )
    patterns = trigger_patterns(str(event["name"]))
    for fn in triggered:
        for trigger in fn.config.event_triggers:
            if trigger.event not in patterns:
                continue
            if trigger.expression is None or await holds(
                trigger.expression,
                {"event": event},
                context=f"event {event.get('id')!r}, trigger of {fn.slug}",
            ):
                matched.append(fn)
                break
    return matched


async def admit_event(
    services: Services,
    conn: AsyncConn,
    fn: FunctionRecord,
    internal_id: str,
    event: Mapping[str, Any],
) -> None:
    """Batch, rate-limit, debounce or schedule ``fn``'s run for this event (semantics §1.1)."""
    if await batch_applies(fn, event):
        await add_to_batch(services, conn, fn, internal_id, event)
        return
    now = services.clock.now_ms()
    if await rate_limited(conn, fn, event, now):
        log.info("event %s dropped for %s by its rate limit", internal_id, fn.slug)
        return
    if fn.config.debounce is not None:
        await debounce_event(services, conn, fn, internal_id, event)
        return
    await schedule_run(services, conn, fn, run_request(internal_id, event, now))


def run_request(internal_id: str, event: Mapping[str, Any], now: int) -> RunRequest:
    """The run one event asks for (a future ``ts`` delays its start)."""
    ts = event.get("ts")
    return RunRequest(
        events=[event],
        event_ids=[internal_id],
        idempotency_key=str(event.get("id") or internal_id),
        not_before=ts if isinstance(ts, int) and ts > now else None,
    )


async def _emit_invoke_not_found(
    services: Services, conn: AsyncConn, event: Mapping[str, Any]
) -> None:
    meta = (event.get("data") or {}).get("_inngest") or {}
    target = str(meta.get("fn_id") or "")
    now = services.clock.now_ms()
    data = {
        "function_id": target,
        "run_id": "",
        "event": dict(event),
        "events": [dict(event)],
        "error": {"name": "Error", "message": f"could not find function with ID: {target}"},
        "_inngest": {"status": "Failed"},
    }
    if meta.get("correlation_id"):
        data["correlation_id"] = meta["correlation_id"]
    finished = {"name": FINISHED, "id": new_ulid(), "data": data, "user": {}, "ts": now}
    await insert_events(conn, [(new_ulid(), finished)], received(now), now, source="internal")


#: Events with more scalar leaves than this look up their pause keys by the paths pauses use
#: instead of sending every ``path=value`` they hold (an outside caller controls the count).
MAX_EVENT_KEYS = 1_000


def event_keys(event: Mapping[str, Any]) -> list[str] | None:
    """Every ``path=value`` equality this event satisfies (scalar leaves of its objects); None
    when it has more than ``MAX_EVENT_KEYS`` leaves."""
    leaves = set()
    for key in _leaves(event, ""):
        leaves.add(key)
        if len(leaves) > MAX_EVENT_KEYS:
            return None
    return sorted(leaves)


def event_keys_at(event: Mapping[str, Any], paths: Sequence[str]) -> list[str]:
    """The ``path=value`` equalities of ``event`` at ``paths`` only."""
    keys = []
    for path in paths:
        # An absent key reads as null, as in the expressions; a spare candidate is harmless
        # (its expression still decides).
        value = expressions.lookup_path(event, path)
        if value is None or isinstance(value, str | int | float | bool):
            keys.append(key_of(path, value))
    return sorted(keys)


def _leaves(value: Any, prefix: str) -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif prefix and (value is None or isinstance(value, str | int | float | bool)):
        yield key_of(prefix, value)


async def _resume_pauses(
    services: Services,
    conn: AsyncConn,
    internal_id: str,
    event: Mapping[str, Any],
    received_at: datetime,
) -> None:
    name = str(event["name"])
    keys = event_keys(event)
    if keys is None:
        keys = event_keys_at(event, await pause_repo.key_paths(conn, name))
    candidates = await pause_repo.find_candidates(conn, name, keys, to_ms(received_at))
    for pause_id, run_id, step_id, kind, expression, _expires, created_at, source in candidates:
        if source == internal_id or created_at > received_at:
            continue  # only events received after the wait began, never its own trigger
        command = await _resume_command(kind, step_id, expression, internal_id, event)
        if command is not None:
            log.debug("event %s resumes pause %s of run %s", internal_id, pause_id, run_id)
            await run_command(services, run_id, command, conn=conn)


async def _resume_command(
    kind: str, step_id: str, expression: str | None, internal_id: str, event: Mapping[str, Any]
) -> c.Command | None:
    context = f"event {internal_id}, {kind} of step {step_id!r}"
    if kind == "invoke":
        data = event.get("data") or {}
        # An error wins, as in Inngest: a failed run's event carries its SDK error in "result" too.
        output = {"error": data["error"]} if "error" in data else {"data": data.get("result")}
        return c.CompleteInvoke(
            step_id=step_id, output=output, child_run_id=str(data.get("run_id") or "") or None
        )
    if kind == "cancel":
        if expression and not await holds(expression, {"async": event}, context=context):
            return None
        return c.CancelRun(reason=f"cancelled by event {event.get('name')}")
    if kind == "wait":
        if expression and not await holds(expression, {"async": event}, context=context):
            return None
        return c.ResumeWait(step_id=step_id, event=dict(event), event_id=internal_id)
    return None
