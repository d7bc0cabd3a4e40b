"""Leases on the database's clock, failed deliveries counted, and a dead-letter table.

* ``stepwell_claim`` now takes the lease length instead of its end: a lease runs from the
  database's ``clock_timestamp()``, and a lease counts as expired only by that clock, so a
  worker whose wall clock runs ahead can never take over a live lease.  Due times of free items
  are still compared with the caller's clock (they were computed with it).
* Taking over an expired lease counts a failed delivery: ``failures`` goes up by one and
  ``last_error`` says why.  Internal handler errors count the same way (the worker requeues
  with ``failures + 1``), and an item that keeps failing moves to ``dead_letters`` instead of
  being retried forever.  Failures are not SDK attempts: ``attempt`` stays what the run's retry
  rules made it, so an infrastructure fault never uses up a step's retries.
* ``dead_letters`` keeps a dead item whole, with the reason, until an operator retries (moves
  it back to the queue) or discards it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROP_PREVIOUS = "DROP FUNCTION stepwell_claim(int, timestamptz, timestamptz, text)"
DROP_CLAIM = "DROP FUNCTION stepwell_claim(int, timestamptz, int, text)"

# As revision 0007's function, with: the lease measured on the database clock; candidates
# that are free and due by the caller's clock, or leased with the lease expired by the
# database's; a takeover of an expired lease counted in ``failures``.  The candidate scan still
# walks ``ix_queue_items_available_at`` (a leased item's ``available_at`` is its lease end).
CLAIM_FUNCTION = """
CREATE FUNCTION stepwell_claim(p_limit int, p_now timestamptz, p_lease_ms int, p_lease text)
RETURNS TABLE (id bigint, kind text, job_id text, run_id text, function_id text,
               attempt int, max_attempts int, payload jsonb, score bigint,
               ckey1 text, ckey2 text, run_version int, failures int, last_error text)
LANGUAGE plpgsql AS $$
DECLARE
  db_now timestamptz := clock_timestamp();
  lease_end timestamptz := db_now + p_lease_ms * interval '1 millisecond';
  expired constant text := 'lease expired: the worker holding the item stopped or stalled';
  ids bigint[]; k1 text[]; l1 int[]; k2 text[]; l2 int[];
  bucket_keys text[]; k text; used int; ok boolean;
  room jsonb := '{}'::jsonb;
  admitted bigint[] := '{}'; blocked bigint[] := '{}';
BEGIN
  SELECT array_agg(c.id ORDER BY c.score, c.id), array_agg(c.ckey1 ORDER BY c.score, c.id),
         array_agg(c.climit1 ORDER BY c.score, c.id), array_agg(c.ckey2 ORDER BY c.score, c.id),
         array_agg(c.climit2 ORDER BY c.score, c.id)
    INTO ids, k1, l1, k2, l2
    FROM (SELECT q.id, q.score, q.ckey1, q.climit1, q.ckey2, q.climit2
            FROM queue_items q
           WHERE q.available_at <= greatest(p_now, db_now)
             AND CASE WHEN q.lease_id IS NULL THEN q.available_at <= p_now
                      ELSE q.leased_until <= db_now END
           ORDER BY q.score, q.id
           LIMIT p_limit
             FOR UPDATE SKIP LOCKED) c;
  IF ids IS NULL THEN
    RETURN;
  END IF;
  SELECT array_agg(DISTINCT x ORDER BY x) INTO bucket_keys
    FROM unnest(k1 || k2) AS x WHERE x IS NOT NULL;
  IF bucket_keys IS NULL THEN
    admitted := ids;
  ELSE
    FOREACH k IN ARRAY bucket_keys LOOP
      PERFORM pg_advisory_xact_lock(hashtextextended(k, 0));
    END LOOP;
    FOREACH k IN ARRAY bucket_keys LOOP
      SELECT count(*) INTO used FROM queue_items q
       WHERE (q.ckey1 = k OR q.ckey2 = k) AND q.leased_until > db_now;
      room := room || jsonb_build_object(k, used);
    END LOOP;
    FOR i IN 1 .. array_length(ids, 1) LOOP
      ok := (k1[i] IS NULL OR (room ->> k1[i])::int < l1[i])
        AND (k2[i] IS NULL OR (room ->> k2[i])::int < l2[i]);
      IF ok THEN
        admitted := admitted || ids[i];
        IF k1[i] IS NOT NULL THEN
          room := jsonb_set(room, ARRAY[k1[i]], to_jsonb((room ->> k1[i])::int + 1));
        END IF;
        IF k2[i] IS NOT NULL AND k2[i] IS DISTINCT FROM k1[i] THEN
          room := jsonb_set(room, ARRAY[k2[i]], to_jsonb((room ->> k2[i])::int + 1));
        END IF;
      ELSE
        blocked := blocked || ids[i];
      END IF;
    END LOOP;
    IF array_length(blocked, 1) > 0 THEN
      UPDATE queue_items q SET available_at = p_now + interval '1 second',
                               failures = q.failures + (q.lease_id IS NOT NULL)::int,
                               last_error = CASE WHEN q.lease_id IS NULL THEN q.last_error
                                                 ELSE expired END,
                               lease_id = NULL, leased_until = NULL
       WHERE q.id = ANY(blocked);
    END IF;
  END IF;
  RETURN QUERY
    UPDATE queue_items q
       SET lease_id = p_lease, leased_until = lease_end, available_at = lease_end,
           failures = q.failures + (q.lease_id IS NOT NULL)::int,
           last_error = CASE WHEN q.lease_id IS NULL THEN q.last_error ELSE expired END
     WHERE q.id = ANY(admitted)
    RETURNING q.id, q.kind, q.job_id, q.run_id, q.function_id, q.attempt, q.max_attempts,
              q.payload, q.score, q.ckey1, q.ckey2,
              (SELECT max(h.version) FROM run_history h WHERE h.run_id = q.run_id),
              q.failures, q.last_error;
END
$$
"""


def upgrade() -> None:
    op.add_column(
        "queue_items", sa.Column("failures", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("queue_items", sa.Column("last_error", sa.Text(), nullable=True))
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("function_id", sa.Text(), nullable=True),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("ckey1", sa.Text(), nullable=True),
        sa.Column("climit1", sa.Integer(), nullable=True),
        sa.Column("ckey2", sa.Text(), nullable=True),
        sa.Column("climit2", sa.Integer(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "died_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_died_at", "dead_letters", ["died_at"], unique=False)
    op.create_index("ix_dead_letters_run_id", "dead_letters", ["run_id"], unique=False)
    op.execute(DROP_PREVIOUS)
    op.execute(CLAIM_FUNCTION)


def downgrade() -> None:
    import importlib

    previous = importlib.import_module("migrations.versions.20261121_0007_claim_run_version")
    op.execute(DROP_CLAIM)
    op.execute(previous.CLAIM_FUNCTION)
    op.drop_index("ix_dead_letters_run_id", table_name="dead_letters")
    op.drop_index("ix_dead_letters_died_at", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_column("queue_items", "last_error")
    op.drop_column("queue_items", "failures")
