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

_PREVIOUS = importlib.import_module("migrations.versions.20261121_0003_flow_control")

# Revision 0003's function with one more result column: the run's history version, looked up
# for each leased item (an index probe on ``(run_id, version)``).
CLAIM_FUNCTION = _PREVIOUS.CLAIM_FUNCTION.replace(
    "ckey1 text, ckey2 text)", "ckey1 text, ckey2 text, run_version int)"
).replace(
    "q.payload, q.score, q.ckey1, q.ckey2;",
    "q.payload, q.score, q.ckey1, q.ckey2,\n"
    "              (SELECT max(h.version) FROM run_history h WHERE h.run_id = q.run_id);",
)
assert CLAIM_FUNCTION.count("run_version") == 1 and "max(h.version)" in CLAIM_FUNCTION


def upgrade() -> None:
    op.execute(DROP)
    op.execute(CLAIM_FUNCTION)


def downgrade() -> None:
    op.execute(DROP)
    op.execute(_PREVIOUS.CLAIM_FUNCTION)
