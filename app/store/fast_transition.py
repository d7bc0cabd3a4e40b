"""The common run transition as one SQL statement: one round trip, no client transaction.

Most transitions are a step finishing: append history, enqueue the next call, ack the claimed
item (or, for a retry, requeue it), sometimes update the runs view.  As data-modifying CTEs of
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
from app.store.queue import ENQUEUE_CTES, enqueue_params, to_dt
from app.store.runs_view import UPSERT_RUN, row_params
from domain.effects import Effect, Enqueue, RetryCall
from domain.history import HistoryEvent
from domain.queue import ClaimedItem
from projections.runs import RunRow

_APPEND = f"\nappended AS ({INSERT_HISTORY_ROWS})"
_VIEW = f"\nviewed AS ({UPSERT_RUN})"
_SETTLE = """
SELECT (SELECT count(*) FROM woke), stepwell_settle(%s, %s, %s, %s, %s)
"""

FAST = "WITH" + _APPEND + "," + ENQUEUE_CTES + _SETTLE
FAST_WITH_VIEW = "WITH" + _APPEND + "," + ENQUEUE_CTES + "," + _VIEW + _SETTLE


def fits(effects: Sequence[Effect], claimed: ClaimedItem | None) -> bool:
    """Whether a transition can take the one-statement path."""
    return claimed is not None and all(isinstance(e, Enqueue | RetryCall) for e in effects)


async def commit_fast(
    conn: AsyncConn,
    *,
    run_id: str,
    base_version: int,
    events: Sequence[HistoryEvent],
    effects: Sequence[Effect],
    claimed: ClaimedItem,
    view: RunRow | None,
    now_ms: int,
) -> None:
    items = [e.item for e in effects if isinstance(e, Enqueue)]
    retry = next(((e.available_at, e.attempt) for e in effects if isinstance(e, RetryCall)), None)
    params: list[object] = [
        *append_params(run_id, base_version, events),
        *enqueue_params(items),
        to_dt(now_ms),
    ]
    if view is not None:
        params.extend(row_params(view))
    params.extend(
        (
            claimed.id,
            claimed.lease_id,
            to_dt(now_ms),
            None if retry is None else to_dt(retry[0]),
            None if retry is None else retry[1],
        )
    )
    await conn.execute(FAST if view is None else FAST_WITH_VIEW, params)
