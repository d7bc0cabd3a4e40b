"""The one SQLAlchemy ``MetaData`` of Stepwell, and the read-side (view) tables on it.

Alembic autogenerates from this metadata (``app/store/tables.py`` adds the write side to it).
Views are derived data: ``stepwell projections rebuild`` can recompute every row from history.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: The runs view: one row per run, written in the same transaction as the history it reflects,
#: so a client reading it sees a run's final status and its output together.
runs = Table(
    "runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("function_id", Text, nullable=False),
    Column("function_slug", Text, nullable=False),
    Column("function_version", Integer, nullable=False),
    Column("app_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("event_ids", ARRAY(Text), nullable=False),
    Column("event_name", Text),
    Column("batch_id", Text),
    Column("cron", Text),
    Column("original_run_id", Text),
    Column("output", JSONB),
    Index("ix_runs_queued_at", "queued_at", "run_id"),
    Index("ix_runs_function_id_queued_at", "function_id", "queued_at"),
    Index("ix_runs_status_queued_at", "status", "queued_at"),
    # The runs an event started (GraphQL event.functionRuns, /v1/events/{id}/runs).
    Index("ix_runs_event_ids", "event_ids", postgresql_using="gin"),
    # Filtered run lists and their totalCount as index-only scans (bench/runs_query.py).
    Index("ix_runs_function_id_status_queued_at", "function_id", "status", "queued_at", "run_id"),
)

#: Tailing projections remember how far they have read the history.  The cursor is the pair
#: (``tx_id``, ``position``) of the last row consumed, in that order: position order is not
#: commit order, so a position alone cannot tell a tailer which rows it has not seen yet
#: (``app/store/stats.py`` explains the watermark).
projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("tx_id", BigInteger, nullable=False, server_default="0"),
)

#: Per-function aggregates by hour, kept by the stats tailer (``projections.stats``).  Counters
#: are sums, so a row is the same whichever order its history rows were applied in; the
#: histogram counts run durations by ``projections.stats.DURATION_BOUNDS_MS`` (changing the
#: bounds needs ``stepwell projections rebuild``).
function_stats = Table(
    "function_stats",
    metadata,
    Column("function_id", Text, primary_key=True),
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("scheduled", BigInteger, nullable=False),
    Column("started", BigInteger, nullable=False),
    Column("completed", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("cancelled", BigInteger, nullable=False),
    Column("skipped", BigInteger, nullable=False),
    Column("retries", BigInteger, nullable=False),
    Column("queue_delay_ms", BigInteger, nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    Column("duration_count", BigInteger, nullable=False),
    Column("duration_histogram", ARRAY(BigInteger), nullable=False),
)
