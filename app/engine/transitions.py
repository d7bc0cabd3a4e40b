"""Run one command against one run: load, decide, commit — re-deciding on a version conflict.

A conflict means another writer appended to the run between our load and our commit (a
parallel step finishing, a wait resolved by an event while its timeout fired).  The command is
still valid, so it is decided again on the fresh history: first write wins, and a command that
lost its race simply decides nothing.  A lost lease means another worker owns the item now;
this worker's work is dropped and the winner's stands.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app import expressions
from app.store.db import AsyncConn
from app.store.history import load_history
from app.store.transitions import LeaseLost, Transition, commit_transition
from domain.commands import Command
from domain.decide import DecideContext, decide
from domain.effects import CreatePause, Decision
from domain.errors import VersionConflict
from domain.history import HistoryEvent
from domain.ids import new_ulid
from domain.queue import ClaimedItem
from domain.run import fold

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 8


def decide_context(services: Services, now_ms: int) -> DecideContext:
    interval = services.settings.retry_interval
    return DecideContext(
        now_ms=now_ms,
        new_id=new_ulid,
        rand=random.random,
        retry_interval_ms=None if interval is None else int(interval * 1000),
        interpolate=expressions.interpolate_event,
    )


def key_of(path: str, value: object) -> str:
    return f"{path}={expressions.match_key_value(value)}"


def pause_key(pause: CreatePause) -> str | None:
    """The equality an event must satisfy to be a candidate for ``pause`` (None: any event)."""
    if pause.correlation_id:
        return key_of("data.correlation_id", pause.correlation_id)
    if pause.expression:
        found = expressions.extract_match_key(pause.expression)
        if found is not None:
            return key_of(*found)
    return None


async def run_command(
    services: Services,
    run_id: str,
    command: Command,
    *,
    claimed: ClaimedItem | None = None,
    history: Sequence[HistoryEvent] | None = None,
    conn: AsyncConn | None = None,
) -> Decision | None:
    """Decide and commit ``command``; None when the claimed item's lease was lost."""
    for _ in range(MAX_CONFLICT_RETRIES):
        if conn is not None:
            outcome = await _attempt(
                services, conn, run_id, command, claimed=claimed, history=history
            )
        else:
            async with services.db.connection() as fresh:
                outcome = await _attempt(
                    services, fresh, run_id, command, claimed=claimed, history=history
                )
        if outcome is not _CONFLICT:
            return outcome if isinstance(outcome, Decision) else None
        history = None
    raise VersionConflict(run_id, -1)


_CONFLICT = object()


async def _attempt(
    services: Services,
    conn: AsyncConn,
    run_id: str,
    command: Command,
    *,
    claimed: ClaimedItem | None,
    history: Sequence[HistoryEvent] | None,
) -> object:
    if history is None:
        history = await load_history(conn, run_id)
    now = services.clock.now_ms()
    decision = decide(fold(history), command, decide_context(services, now))
    if decision.is_empty and claimed is None:
        return decision
    try:
        await commit_transition(
            conn, Transition(run_id, history, decision, claimed, now), pause_key
        )
    except VersionConflict:
        return _CONFLICT
    except LeaseLost as exc:
        log.info("%s; dropping this worker's result for run %s", exc, run_id)
        return None
    return decision
