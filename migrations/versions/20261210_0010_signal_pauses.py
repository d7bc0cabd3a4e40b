"""Pauses for ``step.waitForSignal``: a ``signal`` column, unique among live pauses.

A wait for a signal is a pause like a wait for an event, found by its signal instead of an
event name.  The partial unique index is Inngest's conflict rule made atomic: of two runs that
start waiting on one signal, the second's insert fails (its run then fails, or, with
``conflict: "replace"``, it first clears the other pause's signal in the same transaction), and
``POST /v1/signals`` finds the one waiting run by index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pauses", sa.Column("signal", sa.Text(), nullable=True))
    op.create_index(
        "ux_pauses_signal",
        "pauses",
        ["signal"],
        unique=True,
        postgresql_where=sa.text("signal IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_pauses_signal", table_name="pauses")
    op.drop_column("pauses", "signal")
