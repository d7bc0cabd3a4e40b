"""``stepwell_settle``: ack or requeue a claimed item under its lease, in the transition.

The last statement of every run transition.  It deletes the claimed item (or, for a retry,
makes it due again as the next attempt) only if this worker still holds the lease, and raises
SQLSTATE ``SW001`` otherwise so that the whole transition rolls back; if the item occupied
concurrency buckets it makes the oldest item waiting on them due now.  Folding these checks
into one statement lets a transition be pipelined: one network round trip, no read-back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 03:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SETTLE_FUNCTION = """
CREATE OR REPLACE FUNCTION stepwell_settle(p_id bigint, p_lease text, p_now timestamptz,
                                           p_retry_at timestamptz, p_attempt int)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  k1 text; k2 text; promoted bigint;
BEGIN
  IF p_retry_at IS NULL THEN
    DELETE FROM queue_items WHERE id = p_id AND lease_id = p_lease
    RETURNING ckey1, ckey2 INTO k1, k2;
  ELSE
    UPDATE queue_items
       SET available_at = p_retry_at, attempt = p_attempt, lease_id = NULL,
           leased_until = NULL
     WHERE id = p_id AND lease_id = p_lease
    RETURNING ckey1, ckey2 INTO k1, k2;
  END IF;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'lease on queue item % was lost', p_id USING ERRCODE = 'SW001';
  END IF;
  IF k1 IS NOT NULL OR k2 IS NOT NULL THEN
    UPDATE queue_items SET available_at = p_now
     WHERE id = (SELECT q.id FROM queue_items q
                  WHERE (q.ckey1 IN (k1, k2) OR q.ckey2 IN (k1, k2))
                    AND q.lease_id IS NULL AND q.available_at > p_now
                  ORDER BY q.score, q.id
                  LIMIT 1
                    FOR UPDATE SKIP LOCKED)
    RETURNING id INTO promoted;
    IF promoted IS NOT NULL THEN
      PERFORM pg_notify('stepwell_queue', '');
    END IF;
  END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(SETTLE_FUNCTION)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS stepwell_settle(bigint, text, timestamptz, timestamptz, int)"
    )
