"""``registry_version``: a counter every write to the function registry bumps.

The event handler keeps the functions each event name triggers in memory; the counter, read in
the same statement as the event, tells it whether its copy is still current.  Statement-level
triggers on ``apps``, ``functions`` and ``function_triggers`` bump it inside the writing
transaction, so no registry change can be missed whichever process or code path made it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 06:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("apps", "functions", "function_triggers")

BUMP_FUNCTION = """
CREATE FUNCTION stepwell_bump_registry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE registry_version SET version = version + 1 WHERE id = 1;
  RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "registry_version",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_version")),
    )
    op.execute("INSERT INTO registry_version (id, version) VALUES (1, 0)")
    op.execute(BUMP_FUNCTION)
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER bump_registry AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
            f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION stepwell_bump_registry()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER bump_registry ON {table}")
    op.execute("DROP FUNCTION stepwell_bump_registry()")
    op.drop_table("registry_version")
