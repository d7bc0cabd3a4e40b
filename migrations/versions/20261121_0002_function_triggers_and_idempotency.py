"""Function triggers (indexed by event name) and run idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 02:23:37.187286
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_idempotency",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_run_idempotency")),
    )
    op.create_table(
        "function_triggers",
        sa.Column("function_id", sa.Text(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("event_name", sa.Text(), nullable=True),
        sa.Column("expression", sa.Text(), nullable=True),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("jitter", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["function_id"],
            ["functions.id"],
            name=op.f("fk_function_triggers_function_id_functions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("function_id", "position", name=op.f("pk_function_triggers")),
    )
    op.create_index(
        "ix_function_triggers_event_name", "function_triggers", ["event_name"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_function_triggers_event_name", table_name="function_triggers")
    op.drop_table("function_triggers")
    op.drop_table("run_idempotency")
