"""The ``cancellations`` table — bulk cancellation rules — and the reads that apply them.

A rule names a function and a window of run queue times (``started_after`` … ``started_before``,
both inclusive, the first optional) and optionally a CEL ``expression`` over the run's trigger
``event``.  Rules are read per function (one indexed query) by the executor's check and listed
for the API; the runs a new rule covers are found in the runs view by the
``(function_id, queued_at)`` index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.store.db import AsyncConn
from domain.codec import decode
from domain.history import RunScheduled
from domain.run import RunStatus

_UNFINISHED = [s.value for s in RunStatus if not s.is_final]

_COLUMNS = """id, app_id, function_id, function_slug, started_after, started_before, expression,
       name, created_at"""

INSERT_CANCELLATION = """
INSERT INTO cancellations (id, app_id, function_id, function_slug, started_after,
                           started_before, expression, name, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

LIST_CANCELLATIONS = f"SELECT {_COLUMNS} FROM cancellations ORDER BY id"

RULES_FOR_FUNCTION = f"SELECT {_COLUMNS} FROM cancellations WHERE function_id = %s ORDER BY id"

DELETE_CANCELLATION = "DELETE FROM cancellations WHERE id = %s RETURNING function_id"

# The function by the SDK's ids: ``function_id`` is the slug (``<app>-<fn>``, what upstream
# expects), the function's UUID, or the bare SDK function id within the app.  Active functions
# win over archived ones, an exact slug or id over the composed one.
FIND_FUNCTION = """
SELECT f.id, f.app_id, f.slug
  FROM functions f JOIN apps a ON a.id = f.app_id
 WHERE (a.name = %(app)s OR a.id = %(app)s)
   AND (f.slug = %(fn)s OR f.id = %(fn)s OR f.slug = %(app)s || '-' || %(fn)s)
 ORDER BY f.archived_at IS NULL DESC, (f.slug = %(fn)s OR f.id = %(fn)s) DESC
 LIMIT 1
"""

# Runs that have not ended, queued inside the window.
RUNS_IN_WINDOW = """
SELECT run_id
  FROM runs
 WHERE function_id = %(function_id)s
   AND status = ANY(%(statuses)s)
   AND queued_at <= %(before)s
   AND (%(after)s::timestamptz IS NULL OR queued_at >= %(after)s)
 ORDER BY queued_at, run_id
"""

SCHEDULED_EVENTS = """
SELECT type, schema_version, payload FROM run_history WHERE run_id = ANY(%s) AND version = 1
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancellation:
    id: str
    app_id: str
    function_id: str
    function_slug: str
    started_after: datetime | None
    started_before: datetime
    expression: str | None
    name: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionRef:
    id: str
    app_id: str
    slug: str


def _row(r: Sequence[Any]) -> Cancellation:
    return Cancellation(
        id=r[0],
        app_id=r[1],
        function_id=r[2],
        function_slug=r[3],
        started_after=r[4],
        started_before=r[5],
        expression=r[6],
        name=r[7],
        created_at=r[8],
    )


async def find_function(conn: AsyncConn, app: str, function: str) -> FunctionRef | None:
    cur = await conn.execute(FIND_FUNCTION, {"app": app, "fn": function})
    r = await cur.fetchone()
    return None if r is None else FunctionRef(id=r[0], app_id=r[1], slug=r[2])


async def insert_cancellation(conn: AsyncConn, c: Cancellation) -> None:
    await conn.execute(
        INSERT_CANCELLATION,
        (
            c.id,
            c.app_id,
            c.function_id,
            c.function_slug,
            c.started_after,
            c.started_before,
            c.expression,
            c.name,
            c.created_at,
        ),
    )


async def list_cancellations(conn: AsyncConn) -> list[Cancellation]:
    cur = await conn.execute(LIST_CANCELLATIONS)
    return [_row(r) for r in await cur.fetchall()]


async def rules_for_function(conn: AsyncConn, function_id: str) -> list[Cancellation]:
    cur = await conn.execute(RULES_FOR_FUNCTION, (function_id,))
    return [_row(r) for r in await cur.fetchall()]


async def delete_cancellation(conn: AsyncConn, cancellation_id: str) -> str | None:
    """Delete the rule; its function's id, or None if there was no such rule."""
    cur = await conn.execute(DELETE_CANCELLATION, (cancellation_id,))
    r = await cur.fetchone()
    return None if r is None else str(r[0])


async def runs_in_window(
    conn: AsyncConn, function_id: str, after: datetime | None, before: datetime
) -> list[str]:
    cur = await conn.execute(
        RUNS_IN_WINDOW,
        {"function_id": function_id, "after": after, "before": before, "statuses": _UNFINISHED},
    )
    return [r[0] for r in await cur.fetchall()]


async def trigger_events(conn: AsyncConn, run_ids: Sequence[str]) -> dict[str, Any]:
    """Each run's first trigger event (what a rule's ``event`` is), by run id."""
    cur = await conn.execute(SCHEDULED_EVENTS, (list(run_ids),))
    found: dict[str, Any] = {}
    for type_name, version, payload in await cur.fetchall():
        event = decode(type_name, version, payload)
        if isinstance(event, RunScheduled):
            found[event.run_id] = event.events[0] if event.events else {}
    return found
