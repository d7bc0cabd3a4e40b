"""One run transition = one transaction: history, view, effects and the claimed item's ack.

``commit_transition`` appends the decision's history events after ``base_version``, updates the
runs view if a visible field changed, carries out every effect, and acks (or, for a retry,
requeues) the claimed queue item — all or nothing.  If another writer appended first
(``VersionConflict``), the claimed item's lease was lost (``LeaseLost``) or another run's
pause holds a signal this decision waits on (``SignalConflict``), nothing is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg.pq import TransactionStatus

from app.store import pauses as pause_repo
from app.store.db import AsyncConn
from app.store.events import insert_events, received
from app.store.fast_transition import CLEAR_FINISHED_RUN, commit_fast, fits
from app.store.history import append_history, is_version_conflict
from app.store.queue import LEASE_LOST, Lease, enqueue_items, settle_item
from app.store.runs_view import fold_rows, write_run_row
from domain.effects import (
    ClearPause,
    CreatePause,
    Decision,
    EmitEvent,
    Enqueue,
    FinishRun,
    RetryCall,
)
from domain.errors import SignalConflict, StepwellError, VersionConflict
from domain.history import HistoryEvent
from domain.queue import ClaimedItem
from projections.runs import RunRow

IDLE = TransactionStatus.IDLE

# Never the claimed item itself: it is acked (or requeued) below, under its lease.
DELETE_JOB = "DELETE FROM queue_items WHERE job_id = %s AND id <> %s"


class LeaseLost(StepwellError):
    """The claimed item was re-claimed by another worker (or deleted) meanwhile."""

    def __init__(self, item_id: int) -> None:
        super().__init__(f"lease on queue item {item_id} was lost")
        self.item_id = item_id


@dataclass(frozen=True, slots=True)
class Transition:
    run_id: str
    #: The history version the decision was made on, and the runs-view row at that version.
    base_version: int
    row_before: RunRow | None
    decision: Decision
    claimed: ClaimedItem | None
    now_ms: int

    @classmethod
    def on(
        cls,
        run_id: str,
        history: Sequence[HistoryEvent],
        decision: Decision,
        claimed: ClaimedItem | None,
        now_ms: int,
    ) -> Transition:
        """The transition of ``decision`` made on the whole ``history``."""
        return cls(run_id, len(history), fold_rows(None, history), decision, claimed, now_ms)


async def commit_transition(
    conn: AsyncConn,
    t: Transition,
    pause_key: Callable[[CreatePause], str | None],
    handoff: Lease | None = None,
) -> ClaimedItem | None:
    """Write the transition atomically — pipelined, so one network round trip.

    With ``handoff``, the run's next call may come back already leased to the caller (see
    ``fast_transition.commit_fast``); None otherwise.

    No statement's result is read back before the commit: the lease check is done by
    ``stepwell_settle`` (which raises) and a version conflict by the unique constraint, and
    both surface when the pipeline syncs; either rolls everything back.
    """
    before = t.row_before
    after = fold_rows(before, t.decision.events)
    view = after if after is not None and after != before else None
    try:
        if fits(t.decision.effects, t.claimed) and conn.info.transaction_status is IDLE:
            return await commit_fast(
                conn,
                run_id=t.run_id,
                base_version=t.base_version,
                events=t.decision.events,
                effects=t.decision.effects,
                claimed=t.claimed,
                view=view,
                now_ms=t.now_ms,
                handoff=handoff,
            )
        if conn.info.transaction_status is IDLE:
            # BEGIN/COMMIT sent as plain statements: psycopg's transaction() inside a
            # pipeline adds a sync per nesting level; this keeps it one round trip.
            try:
                async with conn.pipeline():
                    await conn.execute("BEGIN")
                    await _write(conn, t, view, pause_key)
                    await conn.execute("COMMIT")
            except BaseException:
                # An error surfaces when the pipeline syncs, after COMMIT was skipped: the
                # transaction is left aborted, so end it before the connection is reused.
                await _rollback(conn)
                raise
        elif t.base_version == 0 and t.claimed is None:
            # A new run inside the caller's transaction (scheduling for an event): its id is
            # new, so nothing can conflict and no savepoint is needed.
            async with conn.pipeline():
                await _write(conn, t, view, pause_key)
        else:  # inside the caller's transaction: a savepoint
            async with conn.pipeline(), conn.transaction():
                await _write(conn, t, view, pause_key)
    except psycopg.Error as exc:
        if is_version_conflict(exc):
            raise VersionConflict(t.run_id, t.base_version) from exc
        if pause_repo.is_signal_conflict(exc):
            raise SignalConflict(t.run_id, await _signals_held(conn, t)) from exc
        if exc.sqlstate == LEASE_LOST and t.claimed is not None:
            raise LeaseLost(t.claimed.id) from exc
        raise
    return None


async def _write(
    conn: AsyncConn,
    t: Transition,
    view: RunRow | None,
    pause_key: Callable[[CreatePause], str | None],
) -> None:
    await append_history(conn, t.run_id, t.base_version, t.decision.events, fetch=False)
    if view is not None:
        await write_run_row(conn, view)
    retry = await _apply_effects(conn, t, pause_key)
    if t.claimed is not None:
        await settle_item(conn, t.claimed, t.now_ms, retry)


async def _signals_held(conn: AsyncConn, t: Transition) -> frozenset[str]:
    """The signals of the refused pauses that other pauses hold (read after the rollback)."""
    pauses = [e for e in t.decision.effects if isinstance(e, CreatePause) and e.signal]
    if not pauses or conn.info.transaction_status is TransactionStatus.INERROR:
        return frozenset()  # the caller's transaction failed with ours: let it retry
    return await pause_repo.signals_held(conn, pauses)


async def _rollback(conn: AsyncConn) -> None:
    if conn.info.transaction_status is not IDLE and not conn.closed:
        # If the connection is gone, the pool discards it and the server rolled back.
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")


async def _apply_effects(
    conn: AsyncConn, t: Transition, pause_key: Callable[[CreatePause], str | None]
) -> tuple[int, int] | None:
    """Carry out the effects; returns (due at, attempt) when the claimed item is retried."""
    retry = None
    finished = {e.run_id for e in t.decision.effects if isinstance(e, FinishRun)}
    # A run that ends in this decision gets no further items of its own.
    to_enqueue = [
        e.item
        for e in t.decision.effects
        if isinstance(e, Enqueue) and e.item.run_id not in finished
    ]
    emitted = [(e.internal_id, e.event) for e in t.decision.effects if isinstance(e, EmitEvent)]
    keep = t.claimed.id if t.claimed is not None else -1
    for effect in t.decision.effects:
        if isinstance(effect, RetryCall):
            retry = (effect.available_at, effect.attempt)
        elif isinstance(effect, CreatePause):
            await pause_repo.save_pause(conn, effect, pause_key(effect))
        elif isinstance(effect, ClearPause):
            await pause_repo.delete_pause(conn, effect.pause_id)
            await conn.execute(DELETE_JOB, (effect.timeout_job_id, keep))
        elif isinstance(effect, FinishRun):
            run = effect.run_id
            await conn.execute(CLEAR_FINISHED_RUN, (run, run, run, keep))
    await enqueue_items(conn, to_enqueue, t.now_ms, fetch=False)
    await insert_events(conn, emitted, received(t.now_ms), t.now_ms, source="internal")
    return retry
