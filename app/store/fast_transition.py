"""The common run transition as one SQL statement: one round trip, no client transaction.

Most transitions are a step finishing: append history, enqueue the next call, ack the claimed
item (or, for a retry, requeue it), sometimes update the runs view; marking a run started is the
same without a claimed item, and a run's end adds clearing its leftovers and emitting
``inngest/function.finished``.  As data-modifying CTEs of one statement in autocommit they are
one implicit transaction: a version conflict (unique violation) or a lost lease
(``stepwell_settle`` raises ``SW001``) fails the statement and nothing is written — exactly the
guarantees of the general path in ``transitions.py``, without a client-side BEGIN/COMMIT or
pipeline.  Transitions that create or clear pauses take the general path.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from app.store.db import AsyncConn
from app.store.events import INSERT_EVENTS, event_items, event_params, received
from app.store.flow import RELEASE_SINGLETONS, RESERVE_IDEMPOTENCY_KEY
from app.store.history import INSERT_HISTORY_ROWS, INSERT_HISTORY_TEMPLATE, append_params
from app.store.pauses import DELETE_RUN_PAUSES
from app.store.queue import ENQUEUE_CTES, ENQUEUE_TEMPLATE, Lease, enqueue_params, to_dt
from app.store.runs_view import UPSERT_RUN, UPSERT_RUN_TEMPLATE, fold_rows, row_params
from domain.effects import Decision, Effect, EmitEvent, Enqueue, FinishRun, RetryCall
from domain.history import HistoryEvent
from domain.queue import ClaimedItem, ItemKind, ItemSpec
from projections.runs import RunRow

_APPEND = f"\nappended AS ({INSERT_HISTORY_ROWS})"
_VIEW = f"\nviewed AS ({UPSERT_RUN})"
# A finished run's leftovers: its pauses, singleton locks and queue items (never the claimed
# item, settled below under its lease).  Also the general path's statement, as CTEs there.
_FINISH_CTES = f"""
fin_pauses AS ({DELETE_RUN_PAUSES}),
fin_locks AS ({RELEASE_SINGLETONS}),
fin_items AS (DELETE FROM queue_items WHERE run_id = %s AND id <> %s)"""
CLEAR_FINISHED_RUN = "WITH" + _FINISH_CTES + "\nSELECT 1"
_EMIT = f"\nemitted AS ({INSERT_EVENTS})"
_SETTLE = """
SELECT (SELECT count(*) FROM woke), stepwell_settle(%s, %s, %s, %s, %s),
       (SELECT id FROM inserted WHERE lease_id IS NOT NULL LIMIT 1)
"""

# Without a claimed item (e.g. marking a run started) there is nothing to settle.
_UNCLAIMED = """
SELECT (SELECT count(*) FROM woke), NULL, NULL
"""


def _statement(claimed: bool, viewed: bool, finishing: bool, emitting: bool) -> str:
    parts = [_APPEND, ENQUEUE_CTES]
    if viewed:
        parts.append(_VIEW)
    if finishing:
        parts.append(_FINISH_CTES)
    if emitting:
        parts.append(_EMIT)
    return "WITH" + ",".join(parts) + (_SETTLE if claimed else _UNCLAIMED)


#: (with a claimed item, a runs-view write, a run end, emitted events) -> statement
STATEMENTS = {flags: _statement(*flags) for flags in itertools.product((True, False), repeat=4)}


# Scheduling a new run for an event and acking the event's item: every write is gated on the
# idempotency key having been reserved by this statement (nothing but the ack otherwise).
_GATE = "EXISTS (SELECT 1 FROM idem)"
SCHEDULE = (
    f"WITH idem AS ({RESERVE_IDEMPOTENCY_KEY}),"
    f"\nappended AS ({INSERT_HISTORY_TEMPLATE.format(gate=_GATE)}),"
    + ENQUEUE_TEMPLATE.format(gate=_GATE)
    + f",\nviewed AS ({UPSERT_RUN_TEMPLATE.format(gate=_GATE)})"
    + """
SELECT (SELECT count(*) FROM idem), stepwell_settle(%s, %s, %s, NULL, NULL),
       (SELECT id FROM inserted WHERE lease_id IS NOT NULL LIMIT 1)
"""
)


@dataclass(frozen=True, slots=True)
class Scheduled:
    scheduled: bool  # False: the idempotency key was taken, nothing but the ack was written
    handoff: ClaimedItem | None


async def commit_schedule(
    conn: AsyncConn,
    *,
    run_id: str,
    idempotency: Sequence[object],
    decision: Decision,
    event_item: ClaimedItem,
    now_ms: int,
    handoff: Lease | None,
) -> Scheduled:
    """Create a run whose scheduling decision has only ``Enqueue`` effects and ack the event's
    item, in one statement (a lost lease on the item fails it whole, as ever)."""
    assert all(isinstance(e, Enqueue) for e in decision.effects), decision.effects
    view = fold_rows(None, decision.events)
    assert view is not None
    items = [e.item for e in decision.effects if isinstance(e, Enqueue)]
    taken, leases = _handoff_plan(items, run_id, now_ms, handoff)
    params: list[object] = [
        *idempotency,
        *append_params(run_id, 0, decision.events),
        *enqueue_params(items, leases),
        to_dt(now_ms),
        *row_params(view),
        event_item.id,
        event_item.lease_id,
        to_dt(now_ms),
    ]
    cur = await conn.execute(SCHEDULE, params, prepare=True)
    row = await cur.fetchone()
    assert row is not None
    handed = _claimed(row[2], taken, handoff, len(decision.events))
    return Scheduled(scheduled=bool(row[0]), handoff=handed)


def fits(effects: Sequence[Effect], claimed: ClaimedItem | None) -> bool:
    """Whether a transition can take the one-statement path (pauses take the general one)."""
    allowed = Enqueue | FinishRun | EmitEvent | (RetryCall if claimed is not None else Enqueue)
    finishes = sum(isinstance(e, FinishRun) for e in effects)
    if finishes > 1 or (finishes and claimed is not None and claimed.concurrency_keys):
        # Settling a bucketed item promotes a waiter, possibly one of the items the run's end
        # deletes: sequential statements (the general path) keep that unambiguous.
        return False
    return all(isinstance(e, allowed) for e in effects)


async def commit_fast(
    conn: AsyncConn,
    *,
    run_id: str,
    base_version: int,
    events: Sequence[HistoryEvent],
    effects: Sequence[Effect],
    claimed: ClaimedItem | None,
    view: RunRow | None,
    now_ms: int,
    handoff: Lease | None = None,
) -> ClaimedItem | None:
    """Commit; with ``handoff``, the run's next call (if due now) is inserted leased to the
    caller and returned, for it to run without a claim."""
    finished = next((e.run_id for e in effects if isinstance(e, FinishRun)), None)
    # A run that ends in this decision gets no further items of its own.
    items = [e.item for e in effects if isinstance(e, Enqueue) and e.item.run_id != finished]
    emitted = [(e.internal_id, e.event) for e in effects if isinstance(e, EmitEvent)]
    event_specs, listen = event_items(emitted, now_ms, "internal")
    retry = next(((e.available_at, e.attempt) for e in effects if isinstance(e, RetryCall)), None)
    taken, leases = _handoff_plan(items, run_id, now_ms, handoff)
    params: list[object] = [
        *append_params(run_id, base_version, events),
        *enqueue_params([*items, *event_specs], leases, listen),
        to_dt(now_ms),
    ]
    if view is not None:
        params.extend(row_params(view))
    if finished is not None:
        params.extend((finished, finished, finished, -1 if claimed is None else claimed.id))
    if emitted:
        params.extend(event_params(emitted, received(now_ms), now_ms, "internal"))
    if claimed is not None:
        params.extend(
            (
                claimed.id,
                claimed.lease_id,
                to_dt(now_ms),
                None if retry is None else to_dt(retry[0]),
                None if retry is None else retry[1],
            )
        )
    flags = (claimed is not None, view is not None, finished is not None, bool(emitted))
    cur = await conn.execute(STATEMENTS[flags], params, prepare=True)
    row = await cur.fetchone()
    assert row is not None
    return _claimed(row[2], taken, handoff, base_version + len(events))


def _handoff_plan(
    items: Sequence[ItemSpec], run_id: str, now_ms: int, handoff: Lease | None
) -> tuple[ItemSpec | None, dict[str, Lease] | None]:
    """The item to hand off under ``handoff`` (if any) and the ``leases`` to insert it with."""
    taken = _handoff_candidate(items, run_id, now_ms) if handoff is not None else None
    if taken is None or handoff is None:
        return None, None
    return taken, {taken.job_id: handoff}


def _claimed(
    item_id: int | None, spec: ItemSpec | None, lease: Lease | None, run_version: int
) -> ClaimedItem | None:
    """The handed-off item as the worker holds it (as if claimed under ``lease``); None when
    nothing was handed off, or the job already existed (no id came back)."""
    if item_id is None or spec is None or lease is None:
        return None
    return ClaimedItem(
        id=item_id,
        kind=spec.kind,
        job_id=spec.job_id,
        run_id=spec.run_id,
        function_id=spec.function_id,
        attempt=0,
        max_attempts=spec.max_attempts,
        lease_id=lease.lease_id,
        payload=spec.payload,
        run_version=run_version,
    )


def _handoff_candidate(items: Sequence[ItemSpec], run_id: str, now_ms: int) -> ItemSpec | None:
    """The run's own next call, due now and outside any concurrency bucket (those need the
    claim's capacity check), if there is one."""
    for item in items:
        if (
            item.kind in (ItemKind.EDGE, ItemKind.START)
            and item.run_id == run_id
            and item.available_at <= now_ms
            and not item.concurrency
        ):
            return item
    return None
