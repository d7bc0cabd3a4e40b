"""The stats tailer: keeps ``function_stats`` up to date from ``run_history``, and reads it.

**Why not a position checkpoint.**  ``position`` is drawn from a sequence when a row is
inserted, but rows become visible when their transaction commits.  A transaction that inserted
position 10 may still be open when one that inserted position 11 commits; a tailer that read 11
and remembered "done up to 11" would never look at 10 again.  Nor can a tailer wait for gaps to
fill: a rolled-back insert leaves a gap forever, and an uncommitted row is simply invisible.

**The watermark.**  Every row stores the id of the transaction that wrote it (``tx_id``, the
xid8 as bigint).  ``pg_snapshot_xmin(pg_current_snapshot())`` is the oldest transaction still
running, so every transaction below it has ended: its rows are all visible (or rolled back) and
no new row with a ``tx_id`` below it can ever appear.  The tailer consumes only those rows, in
``(tx_id, position)`` order, and its checkpoint is the ``(tx_id, position)`` of the last row it
consumed.  A row that turns up later necessarily belongs to a transaction that was still running
(or had not started) at the last poll, so its ``tx_id`` is at least that poll's watermark, above
every ``tx_id`` consumed so far: it sorts after the checkpoint and is read by the next poll,
whatever its position.  The index ``(tx_id, position)`` makes each poll one index range scan.
The price is lag: a long-running transaction holds the watermark (and the stats) back until it
ends.

**Exactly once.**  A poll runs in one transaction: it takes a transaction-scoped advisory lock
(``pg_try_advisory_xact_lock``; another process already polling makes this one skip), reads
the checkpoint, adds the rows' contributions, and moves the checkpoint.  Stats and checkpoint
commit together, so a crash replays nothing twice and loses nothing; rows at or before the
checkpoint are never applied again, so polling the same rows twice gives the same stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.store.db import AsyncConn
from domain.codec import decode
from domain.history import HistoryEvent
from projections.stats import (
    CHECKPOINT,
    COUNTED_TYPES,
    LOCK_KEY,
    RunFacts,
    StatsRow,
    accumulate,
    contribution,
    facts_of,
    percentile,
)

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)

TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%s)"

LOAD_CHECKPOINT = "SELECT tx_id, position FROM projection_checkpoints WHERE name = %s"

SAVE_CHECKPOINT = """
INSERT INTO projection_checkpoints (name, tx_id, position, updated_at)
VALUES (%s, %s, %s, now())
ON CONFLICT (name) DO UPDATE
   SET tx_id = excluded.tx_id, position = excluded.position, updated_at = excluded.updated_at
"""

# Only rows of ended transactions (see the module docstring).  xid8 has no cast to bigint;
# through text it is exact (xid8 values stay far below 2^63).  Payloads of types that count
# for nothing are not shipped: the row is still read, so the checkpoint moves past it.
SAFE_ROWS = """
SELECT tx_id, position, run_id, type, schema_version,
       CASE WHEN type = ANY(%(types)s) THEN payload END
  FROM run_history
 WHERE (tx_id, position) > (%(tx_id)s, %(position)s)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
 ORDER BY tx_id, position
 LIMIT %(limit)s
"""

RUN_FACTS = """
SELECT run_id, type, schema_version, payload
  FROM run_history
 WHERE run_id = ANY(%s) AND type IN ('RunScheduled', 'RunStarted')
 ORDER BY run_id, version
"""

ADD_STATS = """
INSERT INTO function_stats AS s
       (function_id, hour, scheduled, started, completed, failed, cancelled, skipped, retries,
        queue_delay_ms, duration_ms, duration_count, duration_histogram)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (function_id, hour) DO UPDATE
   SET scheduled = s.scheduled + excluded.scheduled,
       started = s.started + excluded.started,
       completed = s.completed + excluded.completed,
       failed = s.failed + excluded.failed,
       cancelled = s.cancelled + excluded.cancelled,
       skipped = s.skipped + excluded.skipped,
       retries = s.retries + excluded.retries,
       queue_delay_ms = s.queue_delay_ms + excluded.queue_delay_ms,
       duration_ms = s.duration_ms + excluded.duration_ms,
       duration_count = s.duration_count + excluded.duration_count,
       duration_histogram = ARRAY(
           SELECT coalesce(a, 0) + coalesce(b, 0)
             FROM unnest(s.duration_histogram, excluded.duration_histogram)
                  WITH ORDINALITY AS x(a, b, i)
            ORDER BY i)
"""

LOAD_STATS = """
SELECT function_id, hour, scheduled, started, completed, failed, cancelled, skipped, retries,
       queue_delay_ms, duration_ms, duration_count, duration_histogram
  FROM function_stats
 WHERE (%(function_id)s::text IS NULL OR function_id = %(function_id)s)
   AND (%(since)s::timestamptz IS NULL OR hour >= %(since)s)
 ORDER BY function_id, hour
"""

POLL_SECONDS = 1.0
BATCH = 1000


@dataclass(frozen=True, slots=True)
class _Row:
    tx_id: int
    position: int
    run_id: str
    event: HistoryEvent | None


async def stats_pass(conn: AsyncConn, *, limit: int = BATCH) -> int:
    """Consume up to ``limit`` new committed history rows; return how many were consumed.

    0 means nothing was safe to read yet, or another process is polling right now.
    """
    async with conn.transaction():
        cur = await conn.execute(TRY_LOCK, (LOCK_KEY,))
        locked = await cur.fetchone()
        if locked is None or not locked[0]:
            return 0
        cur = await conn.execute(LOAD_CHECKPOINT, (CHECKPOINT,))
        found = await cur.fetchone()
        tx_id, position = (found[0], found[1]) if found is not None else (0, 0)
        cur = await conn.execute(
            SAFE_ROWS,
            {"types": sorted(COUNTED_TYPES), "tx_id": tx_id, "position": position, "limit": limit},
        )
        rows = [
            _Row(r[0], r[1], r[2], None if r[5] is None else decode(r[3], r[4], r[5]))
            for r in await cur.fetchall()
        ]
        if not rows:
            return 0
        await _add(conn, rows)
        await conn.execute(SAVE_CHECKPOINT, (CHECKPOINT, rows[-1].tx_id, rows[-1].position))
        return len(rows)


async def _add(conn: AsyncConn, rows: Sequence[_Row]) -> None:
    counted = [r for r in rows if r.event is not None]
    if not counted:
        return
    facts = await _facts(conn, sorted({r.run_id for r in counted}))
    totals: dict[tuple[str, datetime], StatsRow] = {}
    for row in counted:
        run = facts.get(row.run_id)
        if run is None or row.event is None:
            # Cannot happen for history written by ``decide``; rebuild skips it the same way.
            log.warning("run %s has no RunScheduled; its stats are skipped", row.run_id)
            continue
        accumulate(totals, contribution(row.event, run))
    if totals:
        async with conn.cursor() as cur:
            await cur.executemany(ADD_STATS, [stats_params(t) for t in totals.values()])


async def _facts(conn: AsyncConn, run_ids: list[str]) -> dict[str, RunFacts]:
    cur = await conn.execute(RUN_FACTS, (run_ids,))
    events: dict[str, list[HistoryEvent]] = {}
    for run_id, type_name, version, payload in await cur.fetchall():
        events.setdefault(run_id, []).append(decode(type_name, version, payload))
    found = {run_id: facts_of(evs) for run_id, evs in events.items()}
    return {run_id: f for run_id, f in found.items() if f is not None}


def stats_params(row: StatsRow) -> tuple[Any, ...]:
    return (
        row.function_id,
        row.hour,
        row.scheduled,
        row.started,
        row.completed,
        row.failed,
        row.cancelled,
        row.skipped,
        row.retries,
        row.queue_delay_ms,
        row.duration_ms,
        row.duration_count,
        list(row.duration_histogram),
    )


async def run_stats_tailer(
    services: Services, *, interval: float = POLL_SECONDS, batch: int = BATCH
) -> None:
    """Poll until ``services.stop`` is set; a full batch polls again at once."""
    while not services.stop.is_set():
        consumed = 0
        try:
            async with services.db.connection() as conn:
                consumed = await stats_pass(conn, limit=batch)
        except Exception:  # a bad poll must not end the loop; the next one retries
            log.exception("stats tailer poll failed")
        if consumed >= batch:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(services.stop.wait(), timeout=interval)


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionStats:
    """A function's totals over the hours read (``since`` onwards)."""

    function_id: str
    scheduled: int
    started: int
    completed: int
    failed: int
    cancelled: int
    skipped: int
    retries: int
    avg_queue_delay_ms: float | None
    avg_duration_ms: float | None
    p50_duration_ms: int | None
    p99_duration_ms: int | None


async def load_function_stats(
    conn: AsyncConn, *, function_id: str | None = None, since: datetime | None = None
) -> list[FunctionStats]:
    """Totals per function from the hourly rows (all of them, or from ``since``)."""
    cur = await conn.execute(LOAD_STATS, {"function_id": function_id, "since": since})
    totals: dict[str, StatsRow] = {}
    for r in await cur.fetchall():
        row = _stats_row(r)
        current = totals.get(row.function_id)
        totals[row.function_id] = (
            row if current is None else current + replace(row, hour=current.hour)
        )
    return [_summary(t) for t in totals.values()]


def _stats_row(r: Sequence[Any]) -> StatsRow:
    return StatsRow(
        function_id=r[0],
        hour=r[1],
        scheduled=r[2],
        started=r[3],
        completed=r[4],
        failed=r[5],
        cancelled=r[6],
        skipped=r[7],
        retries=r[8],
        queue_delay_ms=r[9],
        duration_ms=r[10],
        duration_count=r[11],
        duration_histogram=tuple(r[12]),
    )


def _summary(t: StatsRow) -> FunctionStats:
    return FunctionStats(
        function_id=t.function_id,
        scheduled=t.scheduled,
        started=t.started,
        completed=t.completed,
        failed=t.failed,
        cancelled=t.cancelled,
        skipped=t.skipped,
        retries=t.retries,
        avg_queue_delay_ms=t.queue_delay_ms / t.started if t.started else None,
        avg_duration_ms=t.duration_ms / t.duration_count if t.duration_count else None,
        p50_duration_ms=percentile(t.duration_histogram, 0.5),
        p99_duration_ms=percentile(t.duration_histogram, 0.99),
    )
