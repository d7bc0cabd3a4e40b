"""Initial schema: the write side, the queue and the runs view.

events, run_history (UNIQUE run_id+version), queue_items (UNIQUE job_id), pauses, apps,
functions + function_versions, the runs view and projection checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 02:20:53.882574
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), server_default="SERVE", nullable=False),
        sa.Column("sdk_language", sa.Text(), server_default="", nullable=False),
        sa.Column("sdk_version", sa.Text(), server_default="", nullable=False),
        sa.Column("framework", sa.Text(), nullable=True),
        sa.Column("app_version", sa.Text(), nullable=True),
        sa.Column("checksum", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("autodiscovered", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apps")),
        sa.UniqueConstraint("name", name=op.f("uq_apps_name")),
    )
    op.create_table(
        "events",
        sa.Column("internal_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("user", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("v", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("internal_id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_name_internal_id", "events", ["name", "internal_id"], unique=False)
    op.create_index("ix_events_received_at", "events", ["received_at"], unique=False)
    op.create_table(
        "pauses",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("step_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("event_name", sa.Text(), nullable=False),
        sa.Column("match_key", sa.Text(), nullable=True),
        sa.Column("expression", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pauses")),
    )
    op.create_index(
        "ix_pauses_event_name_match_key", "pauses", ["event_name", "match_key"], unique=False
    )
    op.create_index("ix_pauses_run_id", "pauses", ["run_id"], unique=False)
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projection_checkpoints")),
    )
    op.create_table(
        "queue_items",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("function_id", sa.Text(), nullable=True),
        sa.Column("partition_key", sa.Text(), nullable=True),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.Text(), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_items")),
        sa.UniqueConstraint("job_id", name="uq_queue_items_job_id"),
    )
    op.create_index("ix_queue_items_available_at", "queue_items", ["available_at"], unique=False)
    op.create_index("ix_queue_items_run_id", "queue_items", ["run_id"], unique=False)
    op.create_table(
        "run_history",
        sa.Column("position", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "tx_id",
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id())::text::bigint"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_run_history")),
        sa.UniqueConstraint("run_id", "version", name="uq_run_history_run_id_version"),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("function_id", sa.Text(), nullable=False),
        sa.Column("function_slug", sa.Text(), nullable=False),
        sa.Column("function_version", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("event_name", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.Text(), nullable=True),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("original_run_id", sa.Text(), nullable=True),
        sa.Column("output", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_index(
        "ix_runs_function_id_queued_at", "runs", ["function_id", "queued_at"], unique=False
    )
    op.create_index("ix_runs_queued_at", "runs", ["queued_at", "run_id"], unique=False)
    op.create_index("ix_runs_status_queued_at", "runs", ["status", "queued_at"], unique=False)
    op.create_table(
        "functions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_functions_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_functions")),
        sa.UniqueConstraint("slug", name=op.f("uq_functions_slug")),
    )
    op.create_index("ix_functions_app_id", "functions", ["app_id"], unique=False)
    op.create_table(
        "function_versions",
        sa.Column("function_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["function_id"],
            ["functions.id"],
            name=op.f("fk_function_versions_function_id_functions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("function_id", "version", name=op.f("pk_function_versions")),
    )


def downgrade() -> None:
    op.drop_table("function_versions")
    op.drop_index("ix_functions_app_id", table_name="functions")
    op.drop_table("functions")
    op.drop_index("ix_runs_status_queued_at", table_name="runs")
    op.drop_index("ix_runs_queued_at", table_name="runs")
    op.drop_index("ix_runs_function_id_queued_at", table_name="runs")
    op.drop_table("runs")
    op.drop_table("run_history")
    op.drop_index("ix_queue_items_run_id", table_name="queue_items")
    op.drop_index("ix_queue_items_available_at", table_name="queue_items")
    op.drop_table("queue_items")
    op.drop_table("projection_checkpoints")
    op.drop_index("ix_pauses_run_id", table_name="pauses")
    op.drop_index("ix_pauses_event_name_match_key", table_name="pauses")
    op.drop_table("pauses")
    op.drop_index("ix_events_received_at", table_name="events")
    op.drop_index("ix_events_name_internal_id", table_name="events")
    op.drop_table("events")
    op.drop_table("apps")
