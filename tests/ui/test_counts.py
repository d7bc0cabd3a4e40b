"""``app.ui.counts`` sums ``function_stats`` in SQL exactly as ``load_function_stats`` folds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.store.db import AsyncConn
from app.store.stats import load_function_stats
from app.ui.counts import function_counts
from projections.stats import DURATION_BOUNDS_MS

INSERT = """
INSERT INTO function_stats (function_id, hour, scheduled, started, completed, failed, cancelled,
                            skipped, retries, queue_delay_ms, duration_ms, duration_count,
                            duration_histogram)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


async def test_sql_sums_match_the_python_fold(conn: AsyncConn) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    size = len(DURATION_BOUNDS_MS) + 1
    for fn, hours in (("f1", 30), ("f2", 3)):
        for h in range(hours):
            histogram = [(h * (i + 1)) % 5 for i in range(size)]
            row = (fn, now - timedelta(hours=h), h + 2, h + 1, h, h % 3, h % 2, 0, h % 4,
                   10 * h, 100 * h, h, histogram)  # fmt: skip
            await conn.execute(INSERT, row)
    for since in (None, now - timedelta(hours=24)):
        for function_id in (None, "f1"):
            folded = {
                s.function_id: s
                for s in await load_function_stats(conn, function_id=function_id, since=since)
            }
            summed = await function_counts(conn, function_id=function_id, since=since)
            assert summed == folded
    assert await function_counts(conn, function_id="nope") == {}
