"""The queue table: enqueue, claim with ``FOR UPDATE SKIP LOCKED``, extend, ack, requeue.

Leasing moves ``available_at`` to the lease expiry, so one condition (``available_at <= now``)
finds both free due items and items whose worker died; a claim that finds an expired lease
simply takes it over with a new lease id.  Ack, extend and requeue all check the lease id, so a
worker that lost its lease can no longer touch the item.  Enqueue notifies ``stepwell_queue``
(delivered at commit) to wake idle workers; the poll loop is the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from app.store.db import AsyncConn
from domain.ids import new_ulid
from domain.queue import ClaimedItem, ItemKind, ItemSpec

CHANNEL = "stepwell_queue"

# The wake-up NOTIFY rides in the same statement: it fires (at commit) only when an inserted
# item is already due, so a pipelined transition needs no read-back to decide it.
ENQUEUE_CTES = """
inserted AS (
    INSERT INTO queue_items
           (kind, job_id, run_id, function_id, available_at, score, max_attempts, payload,
            ckey1, climit1, ckey2, climit2)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
                         %s::bigint[], %s::int[], %s::jsonb[], %s::text[], %s::int[],
                         %s::text[], %s::int[])
    ON CONFLICT (job_id) DO NOTHING
    RETURNING available_at
), woke AS (
    SELECT pg_notify('stepwell_queue', '') FROM inserted WHERE available_at <= %s LIMIT 1
)"""
ENQUEUE_ITEMS = (
    "WITH" + ENQUEUE_CTES + "\nSELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM woke)"
)

# Ack (or requeue) under the lease, raising SW001 if it was lost; see migration 0006.
SETTLE_ITEM = "SELECT stepwell_settle(%s, %s, %s, %s, %s)"
LEASE_LOST = "SW001"

# One statement: ``stepwell_claim`` (migration 0003) locks candidates with SKIP LOCKED and
# leases only those whose concurrency buckets have room.
CLAIM_DUE_ITEMS = "SELECT * FROM stepwell_claim(%(limit)s, %(now)s, %(until)s, %(lease_id)s)"

EXTEND_LEASE = """
UPDATE queue_items SET leased_until = %s, available_at = %s
 WHERE id = %s AND lease_id = %s
"""

ACK_ITEM = "DELETE FROM queue_items WHERE id = %s AND lease_id = %s"

REQUEUE_ITEM = """
UPDATE queue_items
   SET available_at = %s, attempt = %s, lease_id = NULL, leased_until = NULL
 WHERE id = %s AND lease_id = %s
"""


def to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


async def enqueue_items(
    conn: AsyncConn, items: Sequence[ItemSpec], now_ms: int, *, fetch: bool = True
) -> int:
    """Insert ``items``; existing job ids are skipped.  Returns how many were inserted."""
    if not items:
        return 0
    cur = await conn.execute(ENQUEUE_ITEMS, (*enqueue_params(items), to_dt(now_ms)))
    if not fetch:
        return 0  # pipelined: the count is not worth a round trip
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def enqueue_params(items: Sequence[ItemSpec]) -> tuple[object, ...]:
    """The column arrays of ``ENQUEUE_ITEMS`` (also used inside the one-statement transition)."""
    return (
        [i.kind.value for i in items],
        [i.job_id for i in items],
        [i.run_id for i in items],
        [i.function_id for i in items],
        [to_dt(i.available_at) for i in items],
        [i.effective_score for i in items],
        [i.max_attempts for i in items],
        [Jsonb(dict(i.payload)) for i in items],
        [_bucket(i, 0)[0] for i in items],
        [_bucket(i, 0)[1] for i in items],
        [_bucket(i, 1)[0] for i in items],
        [_bucket(i, 1)[1] for i in items],
    )


def _bucket(item: ItemSpec, index: int) -> tuple[str | None, int | None]:
    if index < len(item.concurrency):
        key, limit = item.concurrency[index]
        return key, limit
    return None, None


async def settle_item(
    conn: AsyncConn, item: ClaimedItem, now_ms: int, retry: tuple[int, int] | None = None
) -> None:
    """Ack ``item`` — or with ``retry=(available_at, attempt)`` requeue it — under its lease.

    Raises (SQLSTATE ``SW001``, possibly only when a pipeline syncs) if the lease was lost.
    """
    retry_at, attempt = retry if retry is not None else (None, None)
    await conn.execute(
        SETTLE_ITEM,
        (
            item.id,
            item.lease_id,
            to_dt(now_ms),
            None if retry_at is None else to_dt(retry_at),
            attempt,
        ),
    )


async def claim_due_items(
    conn: AsyncConn, limit: int, lease_ms: int, now_ms: int
) -> list[ClaimedItem]:
    """Lease up to ``limit`` due items in one statement, lowest score first."""
    lease_id = new_ulid()
    until = now_ms + lease_ms
    cur = await conn.execute(
        CLAIM_DUE_ITEMS,
        {"now": to_dt(now_ms), "limit": limit, "lease_id": lease_id, "until": to_dt(until)},
        prepare=True,
    )
    rows = sorted(await cur.fetchall(), key=lambda r: (r[8], r[0]))  # RETURNING is unordered
    return [
        ClaimedItem(
            id=r[0],
            kind=ItemKind(r[1]),
            job_id=r[2],
            run_id=r[3],
            function_id=r[4],
            attempt=r[5],
            max_attempts=r[6],
            payload=r[7],
            lease_id=lease_id,
            leased_until=until,
            concurrency_keys=tuple(k for k in (r[9], r[10]) if k),
        )
        for r in rows
    ]


async def extend_lease(conn: AsyncConn, item: ClaimedItem, lease_ms: int, now_ms: int) -> bool:
    until = to_dt(now_ms + lease_ms)
    cur = await conn.execute(EXTEND_LEASE, (until, until, item.id, item.lease_id))
    return cur.rowcount == 1


async def ack_item(conn: AsyncConn, item: ClaimedItem) -> bool:
    cur = await conn.execute(ACK_ITEM, (item.id, item.lease_id))
    return cur.rowcount == 1


async def requeue_item(
    conn: AsyncConn, item: ClaimedItem, available_at_ms: int, attempt: int
) -> bool:
    cur = await conn.execute(
        REQUEUE_ITEM, (to_dt(available_at_ms), attempt, item.id, item.lease_id)
    )
    return cur.rowcount == 1
