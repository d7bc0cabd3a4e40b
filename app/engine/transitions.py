"""Run one command against one run: load, decide, commit — re-deciding on a version conflict.

A conflict means another writer appended to the run between our load and our commit (a
parallel step finishing, a wait resolved by an event while its timeout fired).  The command is
still valid, so it is decided again on the fresh history: first write wins, and a command that
lost its race simply decides nothing.  A signal conflict (another run waits on a signal this
decision waits on) is decided again too, told which signals are taken.  A lost lease means
another worker owns the item now; this worker's work is dropped and the winner's stands.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict, Unpack

from app import expressions
from app.engine.run_cache import Snapshot
from app.store.db import AsyncConn
from app.store.history import load_history
from app.store.queue import Lease
from app.store.transitions import LeaseLost, Transition, commit_transition
from domain.commands import Command
from domain.decide import DecideContext, decide
from domain.effects import CreatePause, Decision
from domain.errors import SignalConflict, VersionConflict
from domain.ids import new_ulid
from domain.queue import ClaimedItem

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 8


def decide_context(
    services: Services, now_ms: int, signals_taken: frozenset[str] = frozenset()
) -> DecideContext:
    interval = services.settings.retry_interval
    return DecideContext(
        now_ms=now_ms,
        new_id=new_ulid,
        rand=random.random,
        retry_interval_ms=None if interval is None else int(interval * 1000),
        interpolate=expressions.interpolate_event,
        signals_taken=signals_taken,
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


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``apply_command`` did: the decision (None: the lease was lost, nothing written)
    and the run as it now stands (the snapshot decided on, advanced by what was committed)."""

    decision: Decision | None
    snapshot: Snapshot | None
    #: The run's next call, inserted leased to this worker (see ``commit_transition``).
    handoff: ClaimedItem | None = None


def handoff_lease(services: Services) -> Lease | None:
    """A lease under which a transition may hand the run's next call to this worker (None when
    not running as a queue worker, or stopping: then the next call goes through the queue)."""
    if services.worker is None or services.stop.is_set():
        return None
    lease_ms = int(services.settings.lease_seconds * 1000)
    return Lease(f"{_LEASE_PREFIX}{next(_lease_serial)}", lease_ms)


# Hand-off lease ids only need to be unique: a random per-process prefix and a counter are
# cheaper than a ULID per step.
_LEASE_PREFIX = f"h{os.urandom(6).hex()}-"
_lease_serial = itertools.count()


class On(TypedDict, total=False):
    """What a command is applied on, beyond the run: the claimed queue item it settles, the
    run's snapshot as the caller read it (None: read it here; a stale one conflicts and is
    read again), a connection to use, and a lease for handing the run's next call to this
    worker."""

    claimed: ClaimedItem | None
    snapshot: Snapshot | None
    conn: AsyncConn | None
    handoff: Lease | None


async def run_command(
    services: Services, run_id: str, command: Command, **on: Unpack[On]
) -> Decision | None:
    """Decide and commit ``command``; None when the claimed item's lease was lost."""
    return (await apply_command(services, run_id, command, **on)).decision


async def apply_command(
    services: Services, run_id: str, command: Command, **on: Unpack[On]
) -> Applied:
    """``run_command``, also returning the run's snapshot after the commit (and the run's
    next call, if it was handed to this worker)."""
    conn, snapshot = on.get("conn"), on.get("snapshot")
    taken: frozenset[str] = frozenset()
    for _ in range(MAX_CONFLICT_RETRIES):
        basis = _Basis(on.get("claimed"), snapshot, on.get("handoff"), taken)
        try:
            if conn is not None:
                outcome = await _attempt(services, conn, run_id, command, basis)
            else:
                async with services.db.connection() as fresh:
                    outcome = await _attempt(services, fresh, run_id, command, basis)
        except SignalConflict as exc:
            taken |= exc.signals
            outcome = None
        if outcome is not None:
            return outcome
        snapshot = None
    raise VersionConflict(run_id, -1)


@dataclass(frozen=True, slots=True)
class _Basis:
    """What one attempt decides on, beyond the run's history."""

    claimed: ClaimedItem | None
    snapshot: Snapshot | None
    handoff: Lease | None
    signals_taken: frozenset[str]


async def _attempt(
    services: Services,
    conn: AsyncConn,
    run_id: str,
    command: Command,
    on: _Basis,
) -> Applied | None:
    """One try; None on a version conflict (the caller re-reads and decides again)."""
    claimed, snapshot, handoff = on.claimed, on.snapshot, on.handoff
    if snapshot is None:
        snapshot = Snapshot.of(run_id, await load_history(conn, run_id))
    now = services.clock.now_ms()
    decision = decide(snapshot.state, command, decide_context(services, now, on.signals_taken))
    if decision.is_empty and claimed is None:
        return Applied(decision, snapshot)
    t = Transition(run_id, snapshot.version, snapshot.row, decision, claimed, now)
    try:
        next_item = await commit_transition(conn, t, pause_key, handoff)
    except VersionConflict:
        services.runs.drop(run_id)
        return None
    except LeaseLost as exc:
        services.runs.drop(run_id)
        log.info("%s; dropping this worker's result for run %s", exc, run_id)
        return Applied(None, None)
    except BaseException:
        services.runs.drop(run_id)  # the outcome is unknown: read the run next time
        raise
    after = snapshot.after(decision.events)
    services.runs.put(after)
    return Applied(decision, after, next_item)
