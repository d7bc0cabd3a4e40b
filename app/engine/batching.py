"""Debounce and event batching: events held back, then one run for many events.

* Debounce (semantics §3.5): the first event of a (function, key) opens a debounce and a
  ``debounce`` item due after the period; each later event replaces the stored event (the last
  wins; an older ``ts`` is ignored) and pushes the item out, never past ``timeout``.  When the
  item fires, the run is scheduled with the stored event.
* Batching (§3.6): events of a (function, key) collect in the open batch; it becomes a run with
  ``events = [...]`` when it reaches ``maxSize`` or when its ``schedule-batch`` item fires
  after ``timeout``.

State changes happen under the row lock of the debounce or batch, so concurrent events and
the firing item never interleave; a firing item that finds its debounce pushed out simply
requeues itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app import expressions
from app.engine.evaluation import holds
from app.engine.scheduling import RunRequest, schedule_run
from app.registry.store import FunctionRecord, function_by_slug_or_id
from app.store import flow as repo
from app.store.db import AsyncConn
from app.store.queue import ack_item, enqueue_items, requeue_item, to_dt, to_ms
from domain import flow
from domain.ids import new_ulid
from domain.queue import ClaimedItem, ItemKind, ItemSpec

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)
FIRE_SLACK_MS = 50


def _key_value(expression: str | None, event: Mapping[str, Any]) -> str:
    if not expression:
        return ""
    try:
        return flow.format_value(expressions.evaluate_value(expression, {"event": event}))
    except expressions.ExpressionError:
        return "<invalid>"


async def debounce_event(
    services: Services,
    conn: AsyncConn,
    fn: FunctionRecord,
    internal_id: str,
    event: Mapping[str, Any],
) -> None:
    rule = fn.config.debounce
    assert rule is not None
    now = services.clock.now_ms()
    key = _key_value(rule.key, event)
    timeout_at = now + rule.timeout_ms if rule.timeout_ms else None
    fire_at = min(now + rule.period_ms, timeout_at or now + rule.period_ms)
    debounce_id = new_ulid()
    created = await repo.create_debounce(
        conn,
        function_id=fn.id,
        key=key,
        debounce_id=debounce_id,
        event=dict(event),
        event_id=internal_id,
        fire_at=to_dt(fire_at),
        timeout_at=to_dt(timeout_at) if timeout_at else None,
    )
    if created:
        await enqueue_items(
            conn,
            [
                ItemSpec(
                    kind=ItemKind.DEBOUNCE,
                    job_id=f"debounce:{debounce_id}",
                    available_at=fire_at,
                    function_id=fn.id,
                    payload={"debounce_id": debounce_id},
                    max_attempts=20,
                )
            ],
            now,
        )
        return
    row = await repo.lock_debounce(conn, fn.id, key)
    if row is None:  # fired and deleted between our insert attempt and the lock
        await debounce_event(services, conn, fn, internal_id, event)
        return
    existing_id, stored, _, _, existing_timeout = row
    if int(event.get("ts") or 0) < int(stored.get("ts") or 0):
        return  # an event older than the stored one never replaces it
    limit = to_ms(existing_timeout) if existing_timeout else None
    fire_at = min(now + rule.period_ms, limit) if limit else now + rule.period_ms
    await repo.update_debounce(conn, existing_id, dict(event), internal_id, to_dt(fire_at))
    await repo.push_item(conn, f"debounce:{existing_id}", to_dt(fire_at))


async def fire_debounce(services: Services, item: ClaimedItem) -> None:
    debounce_id = str(item.payload["debounce_id"])
    async with services.db.connection() as conn, conn.transaction():
        row = await repo.lock_debounce_by_id(conn, debounce_id)
        if row is None:
            await ack_item(conn, item)
            return
        function_id, event, event_id, fire_at = row
        if to_ms(fire_at) > services.clock.now_ms() + FIRE_SLACK_MS:
            await requeue_item(conn, item, to_ms(fire_at))  # pushed meanwhile
            return
        fn = await function_by_slug_or_id(conn, function_id)
        if fn is not None:
            await schedule_run(
                services,
                conn,
                fn,
                RunRequest(
                    events=[event], event_ids=[event_id], idempotency_key=f"debounce:{debounce_id}"
                ),
            )
        await repo.delete_debounce(conn, debounce_id)
        await ack_item(conn, item)


async def batch_applies(fn: FunctionRecord, event: Mapping[str, Any]) -> bool:
    rule = fn.config.batch_events
    if rule is None:
        return False
    # A failing or false `if` runs the event on its own, unbatched (semantics §1.1).
    return rule.if_expr is None or await holds(
        rule.if_expr, {"event": event}, context=f"event {event.get('id')!r}, batch of {fn.slug}"
    )


async def add_to_batch(
    services: Services,
    conn: AsyncConn,
    fn: FunctionRecord,
    internal_id: str,
    event: Mapping[str, Any],
) -> None:
    rule = fn.config.batch_events
    assert rule is not None
    now = services.clock.now_ms()
    key = flow.short_hash(_key_value(rule.key, event)) if rule.key else ""
    batch_id, created = await repo.open_batch(conn, fn.id, key, new_ulid(now), to_dt(now))
    if created:
        await enqueue_items(
            conn,
            [
                ItemSpec(
                    kind=ItemKind.BATCH,
                    job_id=f"batch:{batch_id}",
                    available_at=now + rule.timeout_ms,
                    function_id=fn.id,
                    payload={"batch_id": batch_id},
                    max_attempts=20,
                )
            ],
            now,
        )
    size = await repo.append_batch_event(conn, batch_id, internal_id, dict(event))
    if size >= rule.max_size:
        await _start_batch(services, conn, fn, batch_id)
        await conn.execute(
            "DELETE FROM queue_items WHERE job_id = %s AND lease_id IS NULL", (f"batch:{batch_id}",)
        )


async def _start_batch(
    services: Services, conn: AsyncConn, fn: FunctionRecord, batch_id: str
) -> None:
    collected = await repo.batch_events(conn, batch_id)
    if collected:
        await schedule_run(
            services,
            conn,
            fn,
            RunRequest(
                events=[e for _, e in collected],
                event_ids=[i for i, _ in collected],
                idempotency_key=f"{fn.id}-{batch_id}",
                batch_id=batch_id,
            ),
        )
    await repo.close_batch(conn, batch_id)


async def fire_batch(services: Services, item: ClaimedItem) -> None:
    batch_id = str(item.payload["batch_id"])
    async with services.db.connection() as conn, conn.transaction():
        function_id = await repo.lock_batch_by_id(conn, batch_id)
        if function_id is not None:
            fn = await function_by_slug_or_id(conn, function_id)
            if fn is not None:
                await _start_batch(services, conn, fn, batch_id)
            else:
                await repo.close_batch(conn, batch_id)
        await ack_item(conn, item)
