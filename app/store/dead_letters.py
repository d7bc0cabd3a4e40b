"""Dead letters: queue items that kept failing internally, parked whole with the reason.

A worker moves an item here (under its lease, in one statement) once its failed deliveries —
expired leases and internal handler errors, counted in ``queue_items.failures`` — reach the
limit.  Nothing retries a dead letter by itself: an operator lists them (REST, UI), then
retries one (it goes back to the queue, due now, with its failures reset and the same job id)
or discards it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.store.db import AsyncConn
from domain.queue import ClaimedItem

_COLUMNS = (
    "kind, job_id, run_id, function_id, score, attempt, max_attempts, payload, "
    "ckey1, climit1, ckey2, climit2"
)

BURY = f"""
WITH moved AS (
    DELETE FROM queue_items WHERE id = %s AND lease_id = %s
    RETURNING id, {_COLUMNS}, created_at
)
INSERT INTO dead_letters (id, {_COLUMNS}, failures, enqueued_at, reason)
SELECT id, {_COLUMNS}, %s, created_at, %s FROM moved
RETURNING id
"""

# Back to the queue due now (by the database's clock), with a fresh failure count; the job id
# is kept, so if the same job was enqueued again meanwhile the dead letter simply goes away.
RETRY = f"""
WITH dead AS (
    DELETE FROM dead_letters WHERE id = %s RETURNING {_COLUMNS}
), queued AS (
    INSERT INTO queue_items ({_COLUMNS}, available_at)
    SELECT {_COLUMNS}, clock_timestamp() FROM dead
    ON CONFLICT (job_id) DO NOTHING
    RETURNING id
), woke AS (
    SELECT pg_notify('stepwell_queue', '') FROM queued
)
SELECT (SELECT count(*) FROM dead), (SELECT id FROM queued), (SELECT count(*) FROM woke)
"""

DISCARD = "DELETE FROM dead_letters WHERE id = %s"

LIST = """
SELECT id, kind, job_id, run_id, function_id, attempt, max_attempts, failures, reason,
       enqueued_at, died_at, payload
  FROM dead_letters
 WHERE (%(run_id)s::text IS NULL OR run_id = %(run_id)s)
   AND (%(before)s::bigint IS NULL OR id < %(before)s)
 ORDER BY id DESC
 LIMIT %(limit)s
"""

# A bounded count: the primary-key index stops after the cap however many there are.
COUNT = "SELECT count(*) FROM (SELECT 1 FROM dead_letters LIMIT %s) AS d"

#: Ids are the queue's ``bigint`` ids.
MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    id: int
    kind: str
    job_id: str
    run_id: str | None
    function_id: str | None
    attempt: int
    max_attempts: int
    failures: int
    reason: str
    enqueued_at: datetime
    died_at: datetime
    payload: Any


async def bury(conn: AsyncConn, item: ClaimedItem, failures: int, reason: str) -> bool:
    """Move ``item``, after ``failures`` failed deliveries, to the dead letters if this worker
    still holds its lease."""
    cur = await conn.execute(BURY, (item.id, item.lease_id, failures, reason))
    return await cur.fetchone() is not None


RetryOutcome = Literal["requeued", "already-queued", "not-found"]


async def retry(conn: AsyncConn, dead_id: int) -> RetryOutcome:
    """Put a dead letter back on the queue, due now.  ``already-queued``: the same job was
    enqueued again meanwhile, so the dead letter was only dropped."""
    cur = await conn.execute(RETRY, (dead_id,))
    row = await cur.fetchone()
    assert row is not None
    if not row[0]:
        return "not-found"
    return "requeued" if row[1] is not None else "already-queued"


async def discard(conn: AsyncConn, dead_id: int) -> bool:
    cur = await conn.execute(DISCARD, (dead_id,))
    return cur.rowcount == 1


async def list_dead(
    conn: AsyncConn, *, limit: int, before: int | None = None, run_id: str | None = None
) -> list[DeadLetter]:
    """The newest dead letters first (keyset pages by ``before``, an id)."""
    cur = await conn.execute(LIST, {"limit": limit, "before": before, "run_id": run_id})
    return [
        DeadLetter(
            id=r[0],
            kind=r[1],
            job_id=r[2],
            run_id=r[3],
            function_id=r[4],
            attempt=r[5],
            max_attempts=r[6],
            failures=r[7],
            reason=r[8],
            enqueued_at=r[9],
            died_at=r[10],
            payload=r[11],
        )
        for r in await cur.fetchall()
    ]


def parse_id(value: str) -> int | None:
    """A dead letter's id from its decimal text; None for anything else."""
    # ``isascii`` first: ``isdigit`` also accepts other scripts' digits, which int() reads.
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        return None
    return int(value) if 0 < int(value) <= MAX_ID else None


async def count_dead(conn: AsyncConn, cap: int) -> int:
    """How many dead letters there are, counting no further than ``cap``."""
    cur = await conn.execute(COUNT, (cap,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0
