"""The common run transition as one SQL statement: one round trip, no client transaction.

Most transitions are a step finishing: append history, enqueue the next call, ack the claimed
item (or, for a retry, requeue it), sometimes update the runs view; marking a run started is
the same without a claimed item.  As data-modifying CTEs of
one statement in autocommit they are one implicit transaction: a version conflict (unique
violation) or a lost lease (``stepwell_settle`` raises ``SW001``) fails the statement and
nothing is written — exactly the guarantees of the general path in ``transitions.py``, without
a client-side BEGIN/COMMIT or pipeline.  Transitions with other effects (pauses, run end,
emitted events) take the general path.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.store.db import AsyncConn
from app.store.history import INSERT_HISTORY_ROWS, append_params
from app.store.queue import ENQUEUE_CTES, Lease, enqueue_params, to_dt
from app.store.runs_view import UPSERT_RUN, row_params
from domain.effects import Effect, Enqueue, RetryCall
from domain.history import HistoryEvent
from domain.queue import ClaimedItem, ItemKind, ItemSpec
from projections.runs import RunRow

_APPEND = f"\nappended AS ({INSERT_HISTORY_ROWS})"
_VIEW = f"\nviewed AS ({UPSERT_RUN})"
_SETTLE = """
SELECT (SELECT count(*) FROM woke), stepwell_settle(%s, %s, %s, %s, %s),
       (SELECT id FROM inserted WHERE lease_id IS NOT NULL LIMIT 1)
"""

# Without a claimed item (e.g. marking a run started) there is nothing to settle.
_UNCLAIMED = """
SELECT (SELECT count(*) FROM woke), NULL, NULL
"""

#: (with a claimed item, with a runs-view write) -> statement
STATEMENTS = {
    (claimed, viewed): "WITH"
    + _APPEND
    + ","
    + ENQUEUE_CTES
    + ("," + _VIEW if viewed else "")
    + (_SETTLE if claimed else _UNCLAIMED)
    for claimed in (True, False)
    for viewed in (True, False)
}


def fits(effects: Sequence[Effect], claimed: ClaimedItem | None) -> bool:
    """Whether a transition can take the one-statement path."""
    allowed = Enqueue | RetryCall if claimed is not None else Enqueue
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
    items = [e.item for e in effects if isinstance(e, Enqueue)]
    retry = next(((e.available_at, e.attempt) for e in effects if isinstance(e, RetryCall)), None)
    taken = _handoff_candidate(items, run_id, now_ms) if handoff is not None else None
    leases = {taken.job_id: handoff} if taken is not None and handoff is not None else None
    params: list[object] = [
        *append_params(run_id, base_version, events),
        *enqueue_params(items, leases),
        to_dt(now_ms),
    ]
    if view is not None:
        params.extend(row_params(view))
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
    cur = await conn.execute(STATEMENTS[claimed is not None, view is not None], params)
    row = await cur.fetchone()
    if taken is None or handoff is None or row is None or row[2] is None:
        return None  # nothing to hand off, or the job already existed
    return ClaimedItem(
        id=row[2],
        kind=taken.kind,
        job_id=taken.job_id,
        run_id=taken.run_id,
        function_id=taken.function_id,
        attempt=0,
        max_attempts=taken.max_attempts,
        lease_id=handoff.lease_id,
        leased_until=handoff.until_ms,
        payload=taken.payload,
        run_version=base_version + len(events),
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
