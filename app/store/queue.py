"""The queue table: enqueue, claim with ``FOR UPDATE SKIP LOCKED``, extend, ack, requeue.

Leasing moves ``available_at`` to the lease expiry, so one condition (``available_at <= now``)
finds both free due items and items whose worker died; a claim that finds an expired lease
simply takes it over with a new lease id.  Ack, extend and requeue all check the lease id, so a
worker that lost its lease can no longer touch the item.  Enqueue notifies ``stepwell_queue``
(delivered at commit) to wake idle workers; the poll loop is the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from app.store.db import AsyncConn
from domain.ids import new_ulid
from domain.queue import ClaimedItem, ItemKind, ItemSpec

CHANNEL = "stepwell_queue"

# The wake-up NOTIFY rides in the same statement: it fires (at commit) only when an inserted
# item is already due, so a pipelined transition needs no read-back to decide it.
# The items come as one JSON array (times in epoch ms), unpacked by Postgres.  An item with a
# ``lease`` is inserted already leased to the enqueuing worker for ``lease_ms`` — a hand-off: it
# runs the item next without a claim, and the lease protects it exactly as a claim's would.
# Lease ends are on the database's clock (``lease_ms`` from now), like the claim's.
# An item with ``listen`` (an event's name and the trigger patterns it matches) is inserted
# only if, in this statement's snapshot, a pause waits on that name or an active function has
# such a trigger: an internal event nothing listens to is stored but needs no processing.
ENQUEUE_TEMPLATE = """
inserted AS (
    INSERT INTO queue_items
           (kind, job_id, run_id, function_id, available_at, score, max_attempts, payload,
            ckey1, climit1, ckey2, climit2, lease_id, leased_until)
    SELECT x.kind, x.job_id, x.run_id, x.function_id,
           coalesce(clock_timestamp() + x.lease_ms * interval '1 millisecond',
                    to_timestamp(x.at / 1000.0)),
           x.score, x.max_attempts, x.payload, x.ckey1, x.climit1, x.ckey2, x.climit2, x.lease,
           clock_timestamp() + x.lease_ms * interval '1 millisecond'
      FROM jsonb_to_recordset(%s) AS x(kind text, job_id text, run_id text, function_id text,
                                       at bigint, score bigint, max_attempts int, payload jsonb,
                                       ckey1 text, climit1 int, ckey2 text, climit2 int,
                                       lease text, lease_ms bigint, listen text[])
     WHERE {gate}
       AND (x.listen IS NULL
            OR EXISTS (SELECT 1 FROM pauses p WHERE p.event_name = x.listen[1])
            OR EXISTS (SELECT 1 FROM function_triggers t
                         JOIN functions f ON f.id = t.function_id
                        WHERE t.event_name = ANY(x.listen) AND f.archived_at IS NULL))
    ON CONFLICT (job_id) DO NOTHING
    RETURNING id, available_at, lease_id
), woke AS (
    SELECT pg_notify('stepwell_queue', '') FROM inserted WHERE available_at <= %s LIMIT 1
)"""
ENQUEUE_CTES = ENQUEUE_TEMPLATE.format(gate="TRUE")  # {gate}: see INSERT_HISTORY_TEMPLATE
ENQUEUE_ITEMS = (
    "WITH" + ENQUEUE_CTES + "\nSELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM woke)"
)

# Ack (or requeue) under the lease, raising SW001 if it was lost; see migration 0006.
SETTLE_ITEM = "SELECT stepwell_settle(%s, %s, %s, %s, %s)"
LEASE_LOST = "SW001"

# One statement: ``stepwell_claim`` (migration 0003) locks candidates with SKIP LOCKED and
# leases only those whose concurrency buckets have room.
CLAIM_DUE_ITEMS = "SELECT * FROM stepwell_claim(%(limit)s, %(now)s, %(lease_ms)s, %(lease_id)s)"


ACK_ITEM = "DELETE FROM queue_items WHERE id = %s AND lease_id = %s"

REQUEUE_ITEM = """
UPDATE queue_items
   SET available_at = %s, failures = %s, last_error = coalesce(%s, last_error),
       lease_id = NULL, leased_until = NULL
 WHERE id = %s AND lease_id = %s
"""


def to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


async def enqueue_items(
    conn: AsyncConn,
    items: Sequence[ItemSpec],
    now_ms: int,
    *,
    fetch: bool = True,
    listen: Mapping[str, Sequence[str]] | None = None,
) -> int:
    """Insert ``items``; existing job ids are skipped.  Returns how many were inserted."""
    if not items:
        return 0
    cur = await conn.execute(ENQUEUE_ITEMS, (*enqueue_params(items, listen=listen), to_dt(now_ms)))
    if not fetch:
        return 0  # pipelined: the count is not worth a round trip
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease taken at insert time (see ``ENQUEUE_CTES``), ``lease_ms`` long from the
    database's clock."""

    lease_id: str
    lease_ms: int


def enqueue_params(
    items: Sequence[ItemSpec],
    leases: Mapping[str, Lease] | None = None,
    listen: Mapping[str, Sequence[str]] | None = None,
) -> tuple[object, ...]:
    """The items parameter of ``ENQUEUE_ITEMS`` (also used in the one-statement transition);
    ``leases`` by job id insert those items already leased, ``listen`` by job id only if
    something listens to that event (see ``ENQUEUE_CTES``)."""
    rows = []
    for i in items:
        lease = leases.get(i.job_id) if leases else None
        k1, l1 = _bucket(i, 0)
        k2, l2 = _bucket(i, 1)
        rows.append(
            {
                "kind": i.kind.value,
                "job_id": i.job_id,
                "run_id": i.run_id,
                "function_id": i.function_id,
                "at": i.available_at,
                "score": i.effective_score,
                "max_attempts": i.max_attempts,
                "payload": dict(i.payload),
                "ckey1": k1,
                "climit1": l1,
                "ckey2": k2,
                "climit2": l2,
                "lease": None if lease is None else lease.lease_id,
                "lease_ms": None if lease is None else lease.lease_ms,
                "listen": listen.get(i.job_id) if listen else None,
            }
        )
    return (Jsonb(rows),)


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
    """Lease up to ``limit`` items, lowest score first, in one statement: free items due by
    ``now_ms`` and items whose lease expired by the database's clock (a takeover, counted as a
    failed delivery).  Leases run ``lease_ms`` from the database's clock."""
    lease_id = new_ulid()
    cur = await conn.execute(
        CLAIM_DUE_ITEMS,
        {"now": to_dt(now_ms), "limit": limit, "lease_id": lease_id, "lease_ms": lease_ms},
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
            concurrency_keys=tuple(k for k in (r[9], r[10]) if k),
            run_version=r[11],
            failures=r[12],
            last_error=r[13],
        )
        for r in rows
    ]


EXTEND_LEASES = """
UPDATE queue_items q
   SET leased_until = clock_timestamp() + %s * interval '1 millisecond',
       available_at = clock_timestamp() + %s * interval '1 millisecond'
  FROM unnest(%s::bigint[], %s::text[]) AS x(id, lease)
 WHERE q.id = x.id AND q.lease_id = x.lease AND q.leased_until > clock_timestamp()
RETURNING q.id
"""


async def extend_leases(
    conn: AsyncConn, items: Sequence[ClaimedItem], lease_ms: int
) -> set[int]:
    """Extend, to ``lease_ms`` from the database's clock, the leases of ``items`` still held
    under their lease ids and not yet expired; the ids extended.  An expired lease is lost even
    if nobody took the item over yet: its holder was too late, and a claimer may be about to."""
    cur = await conn.execute(
        EXTEND_LEASES, (lease_ms, lease_ms, [i.id for i in items], [i.lease_id for i in items])
    )
    return {row[0] for row in await cur.fetchall()}


async def ack_item(conn: AsyncConn, item: ClaimedItem) -> bool:
    cur = await conn.execute(ACK_ITEM, (item.id, item.lease_id), prepare=True)
    return cur.rowcount == 1


async def requeue_item(
    conn: AsyncConn, item: ClaimedItem, available_at_ms: int, *, error: str | None = None
) -> bool:
    """Release ``item`` to run again at ``available_at_ms``; with ``error`` (an internal
    failure) one more failed delivery is counted."""
    failures = item.failures + (error is not None)
    cur = await conn.execute(
        REQUEUE_ITEM, (to_dt(available_at_ms), failures, error, item.id, item.lease_id)
    )
    return cur.rowcount == 1
