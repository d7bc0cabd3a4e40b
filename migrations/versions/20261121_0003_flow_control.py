"""Flow control: concurrency buckets on queue items, GCRA/debounce/batch/singleton state,
and ``stepwell_claim``, the one-statement claim that respects concurrency limits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 03:03:53.092219
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Claiming in one round trip, limits included.  Candidates are locked with SKIP LOCKED as in
# the plain claim; if any carries a concurrency key, the keys' advisory locks are taken in a
# fixed order (no deadlocks between claimers), the leased items of each key are counted in a
# fresh snapshot (so another claimer's committed leases are seen), and only candidates whose
# every bucket has room are leased.  Candidates without room are pushed back a second; an ack
# of a bucket's item promotes the next waiter sooner.
CLAIM_FUNCTION = """
CREATE OR REPLACE FUNCTION stepwell_claim(p_limit int, p_now timestamptz,
                                          p_until timestamptz, p_lease text)
RETURNS TABLE (id bigint, kind text, job_id text, run_id text, function_id text,
               attempt int, max_attempts int, payload jsonb, score bigint,
               ckey1 text, ckey2 text)
LANGUAGE plpgsql AS $$
DECLARE
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
           WHERE q.available_at <= p_now
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
       WHERE (q.ckey1 = k OR q.ckey2 = k) AND q.leased_until > p_now;
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
                               lease_id = NULL, leased_until = NULL
       WHERE q.id = ANY(blocked);
    END IF;
  END IF;
  RETURN QUERY
    UPDATE queue_items q
       SET lease_id = p_lease, leased_until = p_until, available_at = p_until
     WHERE q.id = ANY(admitted)
    RETURNING q.id, q.kind, q.job_id, q.run_id, q.function_id, q.attempt, q.max_attempts,
              q.payload, q.score, q.ckey1, q.ckey2;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "batch_events",
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "event_id", name=op.f("pk_batch_events")),
    )
    op.create_table(
        "batches",
        sa.Column("function_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("function_id", "key", name=op.f("pk_batches")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_batches_batch_id")),
    )
    op.create_table(
        "debounces",
        sa.Column("function_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("debounce_id", sa.Text(), nullable=False),
        sa.Column("event", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timeout_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("function_id", "key", name=op.f("pk_debounces")),
        sa.UniqueConstraint("debounce_id", name=op.f("uq_debounces_debounce_id")),
    )
    op.create_table(
        "flow_gcra",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("tat", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_flow_gcra")),
    )
    op.create_table(
        "singleton_locks",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_singleton_locks")),
    )
    op.create_index("ix_singleton_locks_run_id", "singleton_locks", ["run_id"], unique=False)
    op.add_column("queue_items", sa.Column("ckey1", sa.Text(), nullable=True))
    op.add_column("queue_items", sa.Column("climit1", sa.Integer(), nullable=True))
    op.add_column("queue_items", sa.Column("ckey2", sa.Text(), nullable=True))
    op.add_column("queue_items", sa.Column("climit2", sa.Integer(), nullable=True))
    op.create_index(
        "ix_queue_items_ckey1",
        "queue_items",
        ["ckey1"],
        unique=False,
        postgresql_where=sa.text("ckey1 IS NOT NULL"),
    )
    op.create_index(
        "ix_queue_items_ckey2",
        "queue_items",
        ["ckey2"],
        unique=False,
        postgresql_where=sa.text("ckey2 IS NOT NULL"),
    )
    op.execute(CLAIM_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS stepwell_claim(int, timestamptz, timestamptz, text)")
    op.drop_index(
        "ix_queue_items_ckey2",
        table_name="queue_items",
        postgresql_where=sa.text("ckey2 IS NOT NULL"),
    )
    op.drop_index(
        "ix_queue_items_ckey1",
        table_name="queue_items",
        postgresql_where=sa.text("ckey1 IS NOT NULL"),
    )
    op.drop_column("queue_items", "climit2")
    op.drop_column("queue_items", "ckey2")
    op.drop_column("queue_items", "climit1")
    op.drop_column("queue_items", "ckey1")
    op.drop_index("ix_singleton_locks_run_id", table_name="singleton_locks")
    op.drop_table("singleton_locks")
    op.drop_table("flow_gcra")
    op.drop_table("debounces")
    op.drop_table("batches")
    op.drop_table("batch_events")
