"""Writes the runs view (``projections.runs``) inside the transaction of the history append."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.types.json import Jsonb

from app.store.db import AsyncConn
from domain.history import HistoryEvent
from projections.runs import RunRow, apply

# ``{gate}``: see ``app/store/history.py``.
UPSERT_RUN_TEMPLATE = """
INSERT INTO runs (run_id, function_id, function_slug, function_version, app_id, status,
                  queued_at, started_at, ended_at, event_ids, event_name, batch_id, cron,
                  original_run_id, output)
SELECT %s::text, %s::text, %s::text, %s::int, %s::text, %s::text, %s::timestamptz,
       %s::timestamptz, %s::timestamptz, %s::text[], %s::text, %s::text, %s::text, %s::text,
       %s::jsonb
 WHERE {gate}
ON CONFLICT (run_id) DO UPDATE
   SET status = excluded.status, started_at = excluded.started_at,
       ended_at = excluded.ended_at, output = excluded.output
"""
UPSERT_RUN = UPSERT_RUN_TEMPLATE.format(gate="TRUE")

LOAD_RUN = """
SELECT run_id, function_id, function_slug, function_version, app_id, status, queued_at,
       started_at, ended_at, event_ids, event_name, batch_id, cron, original_run_id, output
  FROM runs WHERE run_id = %s
"""


def row_params(row: RunRow) -> tuple[object, ...]:
    return (
        row.run_id,
        row.function_id,
        row.function_slug,
        row.function_version,
        row.app_id,
        row.status,
        row.queued_at,
        row.started_at,
        row.ended_at,
        list(row.event_ids),
        row.event_name,
        row.batch_id,
        row.cron,
        row.original_run_id,
        None if row.output is None else Jsonb(row.output),
    )


def fold_rows(row: RunRow | None, events: Sequence[HistoryEvent]) -> RunRow | None:
    for event in events:
        row = apply(row, event)
    return row


async def load_run_row(conn: AsyncConn, run_id: str) -> RunRow | None:
    cur = await conn.execute(LOAD_RUN, (run_id,))
    r = await cur.fetchone()
    if r is None:
        return None
    return RunRow(
        run_id=r[0],
        function_id=r[1],
        function_slug=r[2],
        function_version=r[3],
        app_id=r[4],
        status=r[5],
        queued_at=r[6],
        started_at=r[7],
        ended_at=r[8],
        event_ids=tuple(r[9]),
        event_name=r[10],
        batch_id=r[11],
        cron=r[12],
        original_run_id=r[13],
        output=r[14],
    )


async def write_run_row(conn: AsyncConn, row: RunRow) -> None:
    await conn.execute(UPSERT_RUN, row_params(row))
