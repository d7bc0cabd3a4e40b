"""``stepwell projections rebuild``: recompute every stored view from run history.

The views are derived data, so they can always be thrown away and folded again: the runs view
with ``projections.runs.apply`` (the function the live path uses inside each transition's
transaction) and the per-function stats with ``projections.stats.contribution`` (the function
the stats tailer uses), which is why a rebuild reproduces exactly what the live path wrote.

Everything happens in one transaction, so readers see the old views until the new ones are
complete.  It first takes the projections' advisory lock (no stats tailer polls meanwhile),
then ``SHARE ROW EXCLUSIVE`` on ``runs``: that waits for transitions already writing the view
and holds back new ones until commit — a transition blocked there has not committed its history
either, and it rewrites its run's row from its own full history once it proceeds, so nothing is
lost.  Readers are never blocked.  Stats count only rows whose transaction ended before the
rebuild began (``tx_id`` below the snapshot's xmin, as the tailer does); the tailer's
checkpoint is then set just past them, so it carries on with exactly the rows left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from domain.codec import decode
from domain.history import HistoryEvent
from projections.runs import RunRow, apply
from projections.stats import (
    CHECKPOINT,
    LOCK_KEY,
    StatsRow,
    accumulate,
    contribution,
    facts_of,
)
from projections.tables import function_stats, runs

Conn = psycopg.AsyncConnection[Any]
Progress = Callable[[int, int], None]

#: Sorts after every real position: the checkpoint covers all rows of its ``tx_id``.
_LAST_POSITION = 2**63 - 1

_WATERMARK = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_COUNT_RUNS = "SELECT count(*) FROM run_history WHERE version = 1"
_NEXT_RUNS = """
SELECT run_id FROM run_history WHERE version = 1 AND run_id > %s ORDER BY run_id LIMIT %s
"""
_HISTORY = """
SELECT run_id, tx_id, type, schema_version, payload
  FROM run_history
 WHERE run_id = ANY(%s)
 ORDER BY run_id, version
"""
_SAVE_CHECKPOINT = """
INSERT INTO projection_checkpoints (name, tx_id, position, updated_at)
VALUES (%s, %s, %s, now())
ON CONFLICT (name) DO UPDATE
   SET tx_id = excluded.tx_id, position = excluded.position, updated_at = excluded.updated_at
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuildReport:
    runs: int
    history_rows: int
    stats_rows: int
    #: Stats include exactly the rows whose transaction id is below this.
    watermark: int
    seconds: float


async def rebuild(
    conn: Conn, *, chunk: int = 500, progress: Progress | None = None
) -> RebuildReport:
    """Replace the runs view and ``function_stats`` with a fold of the whole history.

    ``progress(done, total)`` is called after each chunk of runs.
    """
    began = time.monotonic()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        await conn.execute("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE")
        watermark = await _scalar(conn, _WATERMARK)
        total = await _scalar(conn, _COUNT_RUNS)
        await conn.execute("DELETE FROM runs")
        await conn.execute("DELETE FROM function_stats")
        totals: dict[tuple[str, datetime], StatsRow] = {}
        done = history_rows = 0
        after = ""
        while run_ids := [r[0] for r in await _fetch(conn, _NEXT_RUNS, (after, chunk))]:
            rows = await _fetch(conn, _HISTORY, (run_ids,))
            history_rows += len(rows)
            view = [_fold_run(group, watermark, totals) for group in _by_run(rows)]
            await _copy(conn, runs.name, [c.name for c in runs.columns], [r for r in view if r])
            done += len(run_ids)
            after = run_ids[-1]
            if progress is not None:
                progress(done, total)
        stats_columns = [c.name for c in function_stats.columns]
        await _copy(conn, function_stats.name, stats_columns, list(totals.values()))
        await conn.execute(_SAVE_CHECKPOINT, (CHECKPOINT, watermark - 1, _LAST_POSITION))
    return RebuildReport(
        runs=done,
        history_rows=history_rows,
        stats_rows=len(totals),
        watermark=watermark,
        seconds=time.monotonic() - began,
    )


def _fold_run(
    rows: Sequence[Sequence[Any]],
    watermark: int,
    totals: dict[tuple[str, datetime], StatsRow],
) -> RunRow | None:
    events: list[tuple[int, HistoryEvent]] = [(r[1], decode(r[2], r[3], r[4])) for r in rows]
    view: RunRow | None = None
    for _, event in events:
        view = apply(view, event)
    facts = facts_of(e for _, e in events)
    if facts is not None:
        for tx_id, event in events:
            if tx_id < watermark:
                accumulate(totals, contribution(event, facts))
    return view


def _by_run(rows: Sequence[Sequence[Any]]) -> list[list[Sequence[Any]]]:
    groups: list[list[Sequence[Any]]] = []
    for row in rows:
        if groups and groups[-1][0][0] == row[0]:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


async def _copy(
    conn: Conn, table: str, columns: list[str], rows: Sequence[RunRow | StatsRow]
) -> None:
    if not rows:
        return
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            await copy.write_row([_cell(row, name) for name in columns])


def _cell(row: RunRow | StatsRow, name: str) -> Any:
    value = getattr(row, name)
    if name == "output":
        # A JSON ``null`` output is stored as SQL NULL, as the live path stores it.
        return None if value is None else Jsonb(value)
    return list(value) if isinstance(value, tuple) else value


async def _scalar(conn: Conn, sql: str) -> int:
    cur = await conn.execute(sql)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _fetch(conn: Conn, sql: str, params: Sequence[Any]) -> list[Any]:
    cur = await conn.execute(sql, params)
    return list(await cur.fetchall())
