"""Write-side tables.  The schema carries the invariants; comments say why each exists.

Tables are declared on ``projections.tables.metadata`` so that Alembic sees one schema.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from projections.tables import metadata

#: Every ingested event, user and internal, append-only.  ``internal_id`` (ULID) is ours;
#: ``id`` is the sender's idempotency key (defaults to the internal id).  A row is durable
#: before ``/e/`` answers 200.
events = Table(
    "events",
    metadata,
    Column("internal_id", Text, primary_key=True),
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("user", JSONB, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("v", Text),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("source", Text, nullable=False, server_default=""),
    Index("ix_events_name_internal_id", "name", "internal_id"),
    Index("ix_events_received_at", "received_at"),
)

#: One stream per run.  ``UNIQUE (run_id, version)`` is the optimistic-concurrency guard: two
#: writers that both loaded version N can never both append N+1, so a step result, a wait's
#: resolution or a run's end is recorded once.  ``position`` is the global order; ``tx_id`` lets
#: a tailing projection tell rows whose transaction has not committed yet (position order is
#: not commit order).
run_history = Table(
    "run_history",
    metadata,
    Column("position", BigInteger, Identity(always=True), primary_key=True),
    Column("run_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", Text, nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column(
        "tx_id",
        BigInteger,
        nullable=False,
        server_default=text("(pg_current_xact_id())::text::bigint"),
    ),
    UniqueConstraint("run_id", "version", name="uq_run_history_run_id_version"),
)

#: The queue.  ``job_id`` is deterministic and unique, so enqueueing the same job twice is a
#: no-op.  A leased item has ``available_at`` = its lease expiry: one index then serves both
#: "due and free" and "lease expired, claim again".  Acked items are deleted, not flagged, to
#: keep the table small and hot.
queue_items = Table(
    "queue_items",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("job_id", Text, nullable=False),
    Column("run_id", Text),
    Column("function_id", Text),
    Column("partition_key", Text),
    Column("available_at", DateTime(timezone=True), nullable=False),
    Column("score", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),
    Column("lease_id", Text),
    Column("leased_until", DateTime(timezone=True)),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # Concurrency buckets (at most two limits per function): a step item is leased only while
    # fewer than ``climitN`` leased items share ``ckeyN`` (see ``stepwell_claim``).
    Column("ckey1", Text),
    Column("climit1", Integer),
    Column("ckey2", Text),
    Column("climit2", Integer),
    # Deliveries that ended without an outcome: a lease taken over after it expired, or an
    # internal error of the handler.  Not SDK attempts (``attempt``); past a limit the item
    # moves to ``dead_letters`` (migration 0009).
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    UniqueConstraint("job_id", name="uq_queue_items_job_id"),
    Index("ix_queue_items_available_at", "available_at"),
    Index("ix_queue_items_run_id", "run_id"),
    Index("ix_queue_items_ckey1", "ckey1", postgresql_where=text("ckey1 IS NOT NULL")),
    Index("ix_queue_items_ckey2", "ckey2", postgresql_where=text("ckey2 IS NOT NULL")),
)

#: Queue items that kept failing internally, kept whole with the reason until an operator
#: retries them (back to ``queue_items``) or discards them.  ``id`` is the item's queue id.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", Text, nullable=False),
    Column("job_id", Text, nullable=False),
    Column("run_id", Text),
    Column("function_id", Text),
    Column("score", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("ckey1", Text),
    Column("climit1", Integer),
    Column("ckey2", Text),
    Column("climit2", Integer),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("died_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("ix_dead_letters_died_at", "died_at"),
    Index("ix_dead_letters_run_id", "run_id"),
)

#: Runs parked on an event: waitForEvent, invoke, cancelOn.  ``match_key`` is an equality the
#: expression requires (``async.data.id == "42"`` ⇒ ``data.id=42``) so an incoming event finds
#: its candidates by (event name, key) instead of scanning every pause for that name.
#: waitForSignal pauses have an empty event name (no event resumes them) and a ``signal``: the
#: partial unique index lets one live pause hold a signal, so of two runs starting to wait on
#: it at once the database refuses one (Inngest's signal conflict), with no read-then-write.
pauses = Table(
    "pauses",
    metadata,
    Column("id", Text, primary_key=True),
    Column("run_id", Text, nullable=False),
    Column("step_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("event_name", Text, nullable=False),
    Column("match_key", Text),
    Column("expression", Text),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("source_event_id", Text),
    Column("signal", Text),
    Index("ix_pauses_event_name_match_key", "event_name", "match_key"),
    Index("ix_pauses_run_id", "run_id"),
    Index("ux_pauses_signal", "signal", unique=True, postgresql_where=text("signal IS NOT NULL")),
)

#: Synced apps, upserted by name (the URL may change between syncs).
apps = Table(
    "apps",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("method", Text, nullable=False, server_default="SERVE"),
    Column("sdk_language", Text, nullable=False, server_default=""),
    Column("sdk_version", Text, nullable=False, server_default=""),
    Column("framework", Text),
    Column("app_version", Text),
    Column("checksum", Text),
    Column("error", Text),
    Column("autodiscovered", SmallInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Functions by (app, slug); ``version`` points at the current row of ``function_versions``.
functions = Table(
    "functions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("app_id", Text, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    Column("slug", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("config", JSONB, nullable=False),
    Column("archived_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_functions_app_id", "app_id"),
)

#: Every config a function has had, so a run always knows the config it started with.
function_versions = Table(
    "function_versions",
    metadata,
    Column("function_id", Text, ForeignKey("functions.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("config", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("function_id", "version"),
)

#: One row per event/cron trigger of an active function, so an incoming event finds its
#: functions with one indexed lookup on the name patterns it can match (exact + wildcards).
function_triggers = Table(
    "function_triggers",
    metadata,
    Column("function_id", Text, ForeignKey("functions.id", ondelete="CASCADE"), nullable=False),
    Column("position", SmallInteger, nullable=False),
    Column("event_name", Text),
    Column("expression", Text),
    Column("cron", Text),
    Column("jitter", Text),
    PrimaryKeyConstraint("function_id", "position"),
    Index("ix_function_triggers_event_name", "event_name"),
)

#: One row: bumped by triggers on every write to apps/functions/function_triggers (migration
#: 0008), so in-memory copies of the registry can tell whether they are current.
registry_version = Table(
    "registry_version",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

#: Run idempotency: (function, event id) — or a configured key — starts at most one run.
#: Rows outlive the run (Inngest keeps these keys 24 h); ``gc`` drops expired ones.
run_idempotency = Table(
    "run_idempotency",
    metadata,
    Column("key", Text, primary_key=True),
    Column("run_id", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Flow-control state lives in its own module; importing it registers the tables here.
from app.store import flow_tables  # noqa: E402, F401

# The stats tailer reads history in commit-safe order, (tx_id, position) after its checkpoint;
# without this index every poll would scan the whole history.
Index("ix_run_history_tx_id_position", run_history.c.tx_id, run_history.c.position)

#: Bulk cancellations (``POST /v1/cancellations``): runs of ``function_id`` queued between
#: ``started_after`` and ``started_before`` whose trigger event satisfies ``expression`` are
#: cancelled when the rule is created and, if one slips through, before their next SDK call.
#: Looked up per function on that hot path, hence the index.
cancellations = Table(
    "cancellations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("app_id", Text, nullable=False),
    Column("function_id", Text, nullable=False),
    Column("function_slug", Text, nullable=False),
    Column("started_after", DateTime(timezone=True)),
    Column("started_before", DateTime(timezone=True), nullable=False),
    Column("expression", Text),
    Column("name", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_cancellations_function_id", "function_id"),
)
