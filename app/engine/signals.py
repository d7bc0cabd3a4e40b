"""Sending a signal: resume the one run waiting on it (``POST /v1/signals``, ``step.sendSignal``).

The waiting pause is found by its signal, and the run's ``ResumeSignal`` transition — history,
view, the pause's deletion and its timeout item's — commits as one transaction.  The pause is
consumed exactly once by the run's history: of two concurrent signals, or a signal and the
wait's timeout, the first to append wins and the other, decided again on the new history,
finds the step resolved and decides nothing (so a second signal gets "no signal found").
No row lock is taken before the append: every resolver appends history first and deletes
the pause after, so all of them wait on each other in the same order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.engine.transitions import run_command
from app.store import pauses as pause_repo
from app.store.queue import to_ms
from domain import commands as c

if TYPE_CHECKING:
    from app.main import Services

#: Looks at the signal's pause again when the run it named had moved on meanwhile (its wait
#: resolved, and a new wait on the signal may have taken its place).
MAX_LOOKUPS = 3


async def send_signal(services: Services, signal: str, data: Any) -> str | None:
    """The id of the run the signal resumed; None when no run waits on it (or its wait has
    expired and only awaits its timeout, as Inngest treats it)."""
    tried: set[str] = set()
    async with services.ingest_db.connection() as conn:
        for _ in range(MAX_LOOKUPS):
            found = await pause_repo.find_signal_pause(conn, signal)
            if found is None:
                return None
            pause_id, run_id, step_id, expires_at = found
            if pause_id in tried or to_ms(expires_at) <= services.clock.now_ms():
                return None
            tried.add(pause_id)
            command = c.ResumeSignal(step_id=step_id, signal=signal, data=data)
            decision = await run_command(services, run_id, command, conn=conn)
            if decision is not None and decision.events:
                return str(run_id)
    return None
