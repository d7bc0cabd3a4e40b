"""Per-function run counts for the function pages, summed by PostgreSQL.

``app.store.stats.load_function_stats`` folds every hourly ``function_stats`` row in Python,
which costs about a millisecond per ten rows: fine for an hour or a day, slow for a function's
whole history (8,760 rows a year).  This reads the same rows and the same ``FunctionStats``,
but lets the database add them up — counters with ``sum``, the duration histograms element by
element — so a page gets one row per function whatever the retention.  (It belongs next to
``load_function_stats``, which could become this query; it lives here until then.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import sql

from app.store.db import AsyncConn
from app.store.stats import FunctionStats
from projections.stats import percentile

# ``{where}`` is built from fixed fragments, one per filter given (as ``read_queries`` does):
# a generic plan of ``%s IS NULL OR …`` guards could not use the (function_id, hour) key.
SUM_STATS = """
WITH picked AS (
    SELECT * FROM function_stats WHERE {where}
), buckets AS (
    SELECT p.function_id, b.i, sum(b.n)::bigint AS n
      FROM picked p, unnest(p.duration_histogram) WITH ORDINALITY AS b(n, i)
     GROUP BY p.function_id, b.i
)
SELECT t.function_id, t.scheduled, t.started, t.completed, t.failed, t.cancelled, t.skipped,
       t.retries, t.queue_delay_ms, t.duration_ms, t.duration_count,
       (SELECT array_agg(n ORDER BY i) FROM buckets b WHERE b.function_id = t.function_id)
  FROM (SELECT function_id, sum(scheduled)::bigint AS scheduled, sum(started)::bigint AS started,
               sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
               sum(cancelled)::bigint AS cancelled, sum(skipped)::bigint AS skipped,
               sum(retries)::bigint AS retries, sum(queue_delay_ms)::bigint AS queue_delay_ms,
               sum(duration_ms)::bigint AS duration_ms,
               sum(duration_count)::bigint AS duration_count
          FROM picked GROUP BY function_id) AS t
"""


def _stats(r: Sequence[Any]) -> FunctionStats:
    fid, scheduled, started, completed, failed, cancelled, skipped, retries = r[:8]
    queue_delay, duration, duration_count, histogram = r[8:]
    buckets = list(histogram or ())
    return FunctionStats(
        function_id=fid, scheduled=scheduled, started=started, completed=completed,
        failed=failed, cancelled=cancelled, skipped=skipped, retries=retries,
        avg_queue_delay_ms=queue_delay / started if started else None,
        avg_duration_ms=duration / duration_count if duration_count else None,
        p50_duration_ms=percentile(buckets, 0.5), p99_duration_ms=percentile(buckets, 0.99),
    )  # fmt: skip


async def function_counts(
    conn: AsyncConn, *, function_id: str | None = None, since: datetime | None = None
) -> dict[str, FunctionStats]:
    """Totals by function id (all functions, or one), from ``since`` onwards (or ever)."""
    clauses = [sql.SQL("TRUE")]
    if function_id is not None:
        clauses.append(sql.SQL("function_id = %(function_id)s"))
    if since is not None:
        clauses.append(sql.SQL("hour >= %(since)s"))
    query = sql.SQL(SUM_STATS).format(where=sql.SQL(" AND ").join(clauses))
    cur = await conn.execute(query, {"function_id": function_id, "since": since})
    return {s.function_id: s for s in map(_stats, await cur.fetchall())}
