"""Run history in Postgres: ``load_history`` and ``append_history``.

Appends are optimistic: the caller says which version it decided on, the new rows take the next
versions, and ``UNIQUE (run_id, version)`` refuses them if any other writer got there first.
The refusal surfaces as ``VersionConflict`` and the caller's transaction is rolled back whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import errors
from psycopg.types.json import Jsonb

from app.store.db import AsyncConn
from domain.codec import decode, encode
from domain.errors import VersionConflict
from domain.history import HistoryEvent

LOAD_HISTORY = """
SELECT type, schema_version, payload
  FROM run_history
 WHERE run_id = %s
 ORDER BY version
"""

# One statement however many events, and one JSON parameter for all of them: Postgres
# unpacks it in C, where binding one array per column cost the client more than the insert.
# ``{gate}``: a condition other statements can make the insert depend on (e.g. that an
# idempotency key was reserved by an earlier CTE); true here.
INSERT_HISTORY_TEMPLATE = """
INSERT INTO run_history (run_id, version, type, schema_version, payload)
SELECT %s, x.v, x.t, x.s, x.p
  FROM jsonb_to_recordset(%s) AS x(v int, t text, s smallint, p jsonb)
 WHERE {gate}
"""
INSERT_HISTORY_ROWS = INSERT_HISTORY_TEMPLATE.format(gate="TRUE")
APPEND_HISTORY = INSERT_HISTORY_ROWS + "RETURNING position"


async def load_history(conn: AsyncConn, run_id: str) -> list[HistoryEvent]:
    cur = await conn.execute(LOAD_HISTORY, (run_id,), prepare=True)
    return [decode(t, v, p) for t, v, p in await cur.fetchall()]


async def append_history(
    conn: AsyncConn,
    run_id: str,
    expected_version: int,
    events: Sequence[HistoryEvent],
    *,
    fetch: bool = True,
) -> list[int]:
    """Append ``events`` as versions ``expected_version + 1 …``; return their positions.

    Must run inside a transaction: on conflict the statement fails and the transaction with it.
    """
    if not events:
        return []
    params = append_params(run_id, expected_version, events)
    try:
        cur = await conn.execute(APPEND_HISTORY, params)
        # In pipeline mode (fetch=False) a conflict surfaces when the pipeline syncs; the
        # caller maps it the same way (see ``is_version_conflict``).
        return [row[0] for row in await cur.fetchall()] if fetch else []
    except errors.UniqueViolation as exc:
        raise VersionConflict(run_id, expected_version) from exc


def append_params(
    run_id: str, expected_version: int, events: Sequence[HistoryEvent]
) -> tuple[object, ...]:
    """Parameters of ``APPEND_HISTORY`` (also used inside the one-statement transition)."""
    rows = []
    for version, event in enumerate(events, expected_version + 1):
        env = encode(event)
        rows.append({"v": version, "t": env.type, "s": env.schema_version, "p": env.payload})
    return (run_id, Jsonb(rows))


def is_version_conflict(exc: BaseException) -> bool:
    return (
        isinstance(exc, errors.UniqueViolation)
        and exc.diag.constraint_name == "uq_run_history_run_id_version"
    )
