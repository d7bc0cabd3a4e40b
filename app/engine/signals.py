"""Sending a signal: resume the one run waiting on it (``POST /v1/signals``, ``step.sendSignal``).

The waiting pause is found by its signal and locked; the run's ``ResumeSignal`` transition —
history, view, the pause's deletion and its timeout item's — commits in the same transaction.
Of two concurrent signals the second waits on the lock and then finds no pause, and a timeout
racing the signal either deletes the pause first (the signal finds none) or loses on the run's
history version (first write wins), so the step resolves exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.engine.transitions import run_command
from app.store import pauses as pause_repo
from app.store.queue import to_ms
from domain import commands as c

if TYPE_CHECKING:
    from app.main import Services


async def send_signal(services: Services, signal: str, data: Any) -> str | None:
    """The id of the run the signal resumed; None when no run waits on it (or its wait has
    expired and only awaits its timeout, as Inngest treats it)."""
    async with services.ingest_db.connection() as conn, conn.transaction():
        found = await pause_repo.lock_signal_pause(conn, signal)
        if found is None:
            return None
        _pause_id, run_id, step_id, expires_at = found
        if to_ms(expires_at) <= services.clock.now_ms():
            return None
        command = c.ResumeSignal(step_id=step_id, signal=signal, data=data)
        decision = await run_command(services, run_id, command, conn=conn)
    if decision is None or not decision.events:
        return None  # the run had moved on (ended, or the step was resolved) meanwhile
    return str(run_id)
