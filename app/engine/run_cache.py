"""Snapshots of runs a worker is working on, so that a run's next step needs no history read.

A ``Snapshot`` is what a transition is decided and committed on: the run's history version, its
folded state and its runs-view row.  After a commit the worker keeps ``snapshot.after(events)``
— exactly what the database now holds — and the next item of that run, claimed with the run's
current version (``stepwell_claim`` returns it), uses the copy only if the versions agree.  If
anything else advanced the run meanwhile (another process, an event resuming it) the versions
differ and the history is read again; a write that still races is refused by the optimistic
version check and re-decided, as without the cache.  Finished runs and very large states are
not kept, and the cache holds at most ``capacity`` runs (least recently used out first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from app.store.runs_view import fold_rows
from domain.history import HistoryEvent
from domain.run import RunState, fold
from projections.runs import RunRow

#: States larger than this (memoized bytes) are read from the database each time instead.
MAX_CACHED_STATE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Snapshot:
    run_id: str
    version: int
    state: RunState
    row: RunRow | None

    @classmethod
    def of(cls, run_id: str, history: Sequence[HistoryEvent]) -> Snapshot:
        return cls(run_id, len(history), fold(history), fold_rows(None, history))

    def after(self, events: Sequence[HistoryEvent]) -> Snapshot:
        if not events:
            return self
        return Snapshot(
            self.run_id,
            self.version + len(events),
            fold(events, self.state),
            fold_rows(self.row, events),
        )


class RunCache:
    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._runs: OrderedDict[str, Snapshot] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: str, version: int | None) -> Snapshot | None:
        """The kept snapshot of ``run_id`` if it is at ``version`` (the database's), else None."""
        snap = self._runs.get(run_id)
        if snap is None or version is None or snap.version != version:
            return None
        self._runs.move_to_end(run_id)
        return snap

    def put(self, snap: Snapshot) -> None:
        state = snap.state
        if self.capacity <= 0 or state.is_finished or state.state_size > MAX_CACHED_STATE_BYTES:
            self._runs.pop(snap.run_id, None)
            return
        self._runs[snap.run_id] = snap
        self._runs.move_to_end(snap.run_id)
        while len(self._runs) > self.capacity:
            self._runs.popitem(last=False)

    def drop(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
