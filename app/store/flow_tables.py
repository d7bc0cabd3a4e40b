"""Flow-control state tables (one row per key, updated under row locks) and the claim function.

Each table holds exactly the state one flow-control rule needs, so every decision is one
locked read-modify-write that holds across any number of worker processes:

* ``flow_gcra`` — throttle and rate-limit TATs, one row per key;
* ``debounces`` — the pending debounce of a (function, key): last event, fire time;
* ``batches`` / ``batch_events`` — the open batch of a (function, key) and its events;
* ``singleton_locks`` — which run holds a singleton key.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from projections.tables import metadata

flow_gcra = Table(
    "flow_gcra",
    metadata,
    Column("key", Text, primary_key=True),
    Column("tat", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

debounces = Table(
    "debounces",
    metadata,
    Column("function_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("debounce_id", Text, nullable=False, unique=True),
    Column("event", JSONB, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("fire_at", DateTime(timezone=True), nullable=False),
    Column("timeout_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("function_id", "key"),
)

batches = Table(
    "batches",
    metadata,
    Column("function_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("batch_id", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("function_id", "key"),
)

batch_events = Table(
    "batch_events",
    metadata,
    Column("batch_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    Column("event", JSONB, nullable=False),
    PrimaryKeyConstraint("batch_id", "event_id"),
)

singleton_locks = Table(
    "singleton_locks",
    metadata,
    Column("key", Text, primary_key=True),
    Column("run_id", Text, nullable=False),
    Index("ix_singleton_locks_run_id", "run_id"),
)
