"""The pauses table: save, clear, and find candidates for an incoming event by (name, key)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.store.db import AsyncConn
from app.store.queue import to_dt
from domain.effects import CreatePause

INSERT_PAUSE = """
INSERT INTO pauses (id, run_id, step_id, kind, event_name, match_key, expression, expires_at,
                    created_at, source_event_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO NOTHING
"""

DELETE_PAUSE = "DELETE FROM pauses WHERE id = %s"
DELETE_RUN_PAUSES = "DELETE FROM pauses WHERE run_id = %s"

# Candidates: pauses on this event name whose key is one the event has, plus keyless ones.
FIND_CANDIDATES = """
SELECT id, run_id, step_id, kind, expression, expires_at, created_at, source_event_id
  FROM pauses
 WHERE event_name = %s
   AND (match_key IS NULL OR match_key = ANY(%s))
   AND expires_at > %s
"""


# The paths the keys of this event name's pauses are on ("data.id" of "data.id=s:42"): an event
# too big to list every key it holds computes only these.
KEY_PATHS = """
SELECT DISTINCT split_part(match_key, '=', 1) FROM pauses
 WHERE event_name = %s AND match_key IS NOT NULL
"""


async def save_pause(conn: AsyncConn, pause: CreatePause, match_key: str | None) -> None:
    await conn.execute(
        INSERT_PAUSE,
        (
            pause.pause_id,
            pause.run_id,
            pause.step_id,
            pause.kind,
            pause.event_name,
            match_key,
            pause.expression,
            to_dt(pause.expires_at),
            to_dt(pause.created_at),
            pause.source_event_id,
        ),
    )


async def delete_pause(conn: AsyncConn, pause_id: str) -> None:
    await conn.execute(DELETE_PAUSE, (pause_id,))


async def find_candidates(
    conn: AsyncConn, event_name: str, keys: Sequence[str], now_ms: int
) -> list[tuple[Any, ...]]:
    cur = await conn.execute(FIND_CANDIDATES, (event_name, list(keys), to_dt(now_ms)), prepare=True)
    return list(await cur.fetchall())


async def key_paths(conn: AsyncConn, event_name: str) -> list[str]:
    cur = await conn.execute(KEY_PATHS, (event_name,))
    return [row[0] for row in await cur.fetchall()]
