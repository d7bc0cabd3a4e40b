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
from app.store.history import append_params
from app.store.queue import enqueue_params, to_dt
from app.store.runs_view import row_params
from domain.effects import Effect, Enqueue, RetryCall
from domain.history import HistoryEvent
from domain.queue import ClaimedItem
from projections.runs import RunRow

_APPEND = """
appended AS (
    INSERT INTO run_history (run_id, version, type, schema_version, payload)
    SELECT %s, x.version, x.type, x.schema_version, x.payload
      FROM unnest(%s::int[], %s::text[], %s::smallint[], %s::jsonb[])
           AS x(version, type, schema_version, payload)
)"""

_ENQUEUE = """
inserted AS (
    INSERT INTO queue_items
           (kind, job_id, run_id, function_id, available_at, score, max_attempts, payload,
            ckey1, climit1, ckey2, climit2)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
                         %s::bigint[], %s::int[], %s::jsonb[], %s::text[], %s::int[],
                         %s::text[], %s::int[])
    ON CONFLICT (job_id) DO NOTHING
    RETURNING available_at
), woke AS (
    SELECT pg_notify('stepwell_queue', '') FROM inserted WHERE available_at <= %s LIMIT 1
)"""

_VIEW = """
viewed AS (
    INSERT INTO runs (run_id, function_id, function_slug, function_version, app_id, status,
                      queued_at, started_at, ended_at, event_ids, event_name, batch_id, cron,
                      original_run_id, output)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (run_id) DO UPDATE
       SET status = excluded.status, started_at = excluded.started_at,
           ended_at = excluded.ended_at, output = excluded.output
)"""

_SETTLE = """
SELECT (SELECT count(*) FROM woke), stepwell_settle(%s, %s, %s, %s, %s)
"""

FAST = "WITH" + _APPEND + "," + _ENQUEUE + _SETTLE
FAST_WITH_VIEW = "WITH" + _APPEND + "," + _ENQUEUE + "," + _VIEW + _SETTLE


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
