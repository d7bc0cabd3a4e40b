"""Read side: bulk cancellations, per-function stats, and a commit-order-safe history cursor.

``cancellations`` holds the rules of ``POST /v1/cancellations``; ``function_stats`` the hourly
per-function aggregates of the stats tailer; ``projection_checkpoints.tx_id`` and the
``run_history (tx_id, position)`` index let a tailer read history in commit-safe order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 03:04:45.775190
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cancellations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("function_id", sa.Text(), nullable=False),
        sa.Column("function_slug", sa.Text(), nullable=False),
        sa.Column("started_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expression", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cancellations")),
    )
    op.create_index("ix_cancellations_function_id", "cancellations", ["function_id"], unique=False)
    op.create_table(
        "function_stats",
        sa.Column("function_id", sa.Text(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduled", sa.BigInteger(), nullable=False),
        sa.Column("started", sa.BigInteger(), nullable=False),
        sa.Column("completed", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("cancelled", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("retries", sa.BigInteger(), nullable=False),
        sa.Column("queue_delay_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_count", sa.BigInteger(), nullable=False),
        sa.Column("duration_histogram", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.PrimaryKeyConstraint("function_id", "hour", name=op.f("pk_function_stats")),
    )
    op.add_column(
        "projection_checkpoints",
        sa.Column("tx_id", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_index(
        "ix_run_history_tx_id_position", "run_history", ["tx_id", "position"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_run_history_tx_id_position", table_name="run_history")
    op.drop_column("projection_checkpoints", "tx_id")
    op.drop_table("function_stats")
    op.drop_index("ix_cancellations_function_id", table_name="cancellations")
    op.drop_table("cancellations")
