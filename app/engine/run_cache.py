"""Snapshots of runs a worker is working on, so that a run's next step needs no history read.

A ``Snapshot`` is what a transition is decided and committed on: the run's history version, its
folded state and its runs-view row.  After a commit the worker keeps ``snapshot.after(events)``
— exactly what the database now holds — and the next item of that run, claimed with the run's
current version (``stepwell_claim`` returns it), uses the copy only if the versions agree.  If
anything else advanced the run meanwhile (another process, an event resuming it) the versions
differ and the history is read again; a write that still races is refused by the optimistic
version check and re-decided, as without the cache.  Finished runs and very large states are
not kept, and the cache holds at most ``capacity`` runs and ``max_bytes`` of their weight
(trigger events plus memoized step output, as JSON), least recently used out first: a burst of
runs triggered by 3 MiB events cannot grow a worker by gigabytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from app.store.runs_view import fold_rows
from domain.history import HistoryEvent
from domain.run import RunState, fold
from projections.runs import RunRow

#: Runs heavier than this (see ``Snapshot.weight``) are read from the database each time.
MAX_CACHED_STATE_BYTES = 256 * 1024
#: What a worker may keep in all: 64 MiB of run data, at most.
MAX_CACHE_BYTES = 64 * 1024 * 1024
#: Bookkeeping a snapshot costs beyond its data (state, view row, dicts).
SNAPSHOT_OVERHEAD = 2048


@dataclass(frozen=True, slots=True)
class Snapshot:
    run_id: str
    version: int
    state: RunState
    row: RunRow | None
    #: JSON bytes of the run's trigger events (they never change once it is scheduled).
    event_bytes: int = 0

    @classmethod
    def of(cls, run_id: str, history: Sequence[HistoryEvent]) -> Snapshot:
        state = fold(history)
        events = len(msgspec.json.encode(state.events)) if state.events else 0
        return cls(run_id, len(history), state, fold_rows(None, history), events)

    def after(self, events: Sequence[HistoryEvent]) -> Snapshot:
        if not events:
            return self
        return Snapshot(
            self.run_id,
            self.version + len(events),
            fold(events, self.state),
            fold_rows(self.row, events),
            self.event_bytes,
        )

    @property
    def weight(self) -> int:
        """About what keeping this snapshot costs in memory, in bytes."""
        return SNAPSHOT_OVERHEAD + self.event_bytes + self.state.state_size


class RunCache:
    def __init__(self, capacity: int = 4096, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._runs: OrderedDict[str, Snapshot] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._runs)

    @property
    def bytes(self) -> int:
        """The summed weight of the snapshots kept."""
        return self._bytes

    def get(self, run_id: str, version: int | None) -> Snapshot | None:
        """The kept snapshot of ``run_id`` if it is at ``version`` (the database's), else None."""
        snap = self._runs.get(run_id)
        if snap is None or version is None or snap.version != version:
            return None
        self._runs.move_to_end(run_id)
        return snap

    def put(self, snap: Snapshot) -> None:
        self.drop(snap.run_id)
        weight = snap.weight
        if self.capacity <= 0 or snap.state.is_finished or weight > MAX_CACHED_STATE_BYTES:
            return
        self._runs[snap.run_id] = snap
        self._bytes += weight
        while len(self._runs) > self.capacity or self._bytes > self.max_bytes:
            _, evicted = self._runs.popitem(last=False)
            self._bytes -= evicted.weight

    def drop(self, run_id: str) -> None:
        dropped = self._runs.pop(run_id, None)
        if dropped is not None:
            self._bytes -= dropped.weight
