"""``stepwell_claim`` also returns each item's run history version.

A worker keeps the state of the runs it works on in memory; the version read at claim time
(one index probe per item, in the claim's statement) tells it whether its copy is current, so
a step needs no history read unless another process advanced the run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 05:30:00
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The result type changes, so the function is dropped and created again (in the migration's
# transaction: concurrent claimers wait for it, never see it missing).
DROP = "DROP FUNCTION stepwell_claim(int, timestamptz, timestamptz, text)"

CLAIM_FUNCTION = """
CREATE OR REPLACE FUNCTION stepwell_claim(p_limit int, p_now timestamptz,
                                          p_until timestamptz, p_lease text)
RETURNS TABLE (id bigint, kind text, job_id text, run_id text, function_id text,
               attempt int, max_attempts int, payload jsonb, score bigint,
               ckey1 text, ckey2 text, run_version int)
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
              q.payload, q.score, q.ckey1, q.ckey2,
              (SELECT max(h.version) FROM run_history h WHERE h.run_id = q.run_id);
END
$$
"""


def upgrade() -> None:
    op.execute(DROP)
    op.execute(CLAIM_FUNCTION)


def downgrade() -> None:
    previous = importlib.import_module("migrations.versions.20261121_0003_flow_control")
    op.execute(DROP)
    op.execute(previous.CLAIM_FUNCTION)
