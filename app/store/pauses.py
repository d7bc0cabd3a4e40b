"""The pauses table: save, clear, find candidates for an incoming event by (name, key), and
find the one pause waiting on a signal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import errors

from app.store.db import AsyncConn
from app.store.queue import to_dt
from domain.effects import CreatePause

INSERT_PAUSE = """
INSERT INTO pauses (id, run_id, step_id, kind, event_name, match_key, expression, expires_at,
                    created_at, source_event_id, signal)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO NOTHING
"""

# ``conflict: "replace"``: the pause holding the signal keeps waiting, but only for its timeout
# (as in Inngest, whose signal index then points at the new pause).  Inserting the new pause
# after this in the same transaction is what makes the take-over atomic; a concurrent taker's
# insert still fails on the unique index, and its retry runs this again.
RELEASE_SIGNAL = "UPDATE pauses SET signal = NULL WHERE signal = %s AND id <> %s"

# The pause a signal resumes.  Not locked: the run's history decides which resolver wins.
FIND_SIGNAL_PAUSE = "SELECT id, run_id, step_id, expires_at FROM pauses WHERE signal = %s"

#: The partial unique index on ``pauses.signal`` (see ``app/store/tables.py``).
SIGNAL_INDEX = "ux_pauses_signal"

SIGNALS_HELD = "SELECT signal FROM pauses WHERE signal = ANY(%s) AND NOT (id = ANY(%s))"

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
    if pause.signal is not None and pause.replace_signal:
        await conn.execute(RELEASE_SIGNAL, (pause.signal, pause.pause_id))
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
            pause.signal,
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


async def find_signal_pause(conn: AsyncConn, signal: str) -> tuple[Any, ...] | None:
    """``(id, run_id, step_id, expires_at)`` of the pause waiting on ``signal``; None when no
    run waits on it."""
    cur = await conn.execute(FIND_SIGNAL_PAUSE, (signal,))
    return await cur.fetchone()


async def signals_held(conn: AsyncConn, pauses: Sequence[CreatePause]) -> frozenset[str]:
    """Which signals of ``pauses`` a pause other than these holds."""
    cur = await conn.execute(
        SIGNALS_HELD, ([p.signal for p in pauses], [p.pause_id for p in pauses])
    )
    return frozenset(row[0] for row in await cur.fetchall())


def is_signal_conflict(exc: BaseException) -> bool:
    return isinstance(exc, errors.UniqueViolation) and exc.diag.constraint_name == SIGNAL_INDEX
