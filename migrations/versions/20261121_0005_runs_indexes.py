"""Runs view indexes: a GIN index for the runs of an event, and a covering index for
filtered run lists with their totalCount.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 03:24:15.642928
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_event_ids", "runs", ["event_ids"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_runs_function_id_status_queued_at",
        "runs",
        ["function_id", "status", "queued_at", "run_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_runs_function_id_status_queued_at", table_name="runs")
    op.drop_index("ix_runs_event_ids", table_name="runs", postgresql_using="gin")
