"""Per-function stats: what each history event adds to its function's hourly aggregates.

``contribution(event, facts)`` is pure: it says which ``(function_id, hour)`` row an event
counts towards and by how much.  Both writers of ``function_stats`` use it — the stats tailer
(``app/store/stats.py``), one committed history row at a time, and ``projections rebuild``, over
whole histories — and because every column is a sum, applying the same set of rows in any order
gives the same table.  ``RunFacts`` carries what a later event needs from its run's earlier
ones (function, queue and start times); those events are written once and never change, so
every consumer sees the same facts whenever it reads them.  Durations (end minus start, for
runs that started) also go into a histogram with fixed bounds, from which ``percentile``
estimates p50/p99.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime

from domain import history as h

#: Name of the tailer's row in ``projection_checkpoints``.
CHECKPOINT = "function_stats"

#: One transaction-scoped advisory lock serialises every writer of the tailed views: tailers
#: try it (and skip a poll if another process holds it), a rebuild waits for it.
LOCK_KEY = 0x5374_6570_7374_6174  # "Stepstat"

#: Upper bounds (ms, inclusive) of the duration histogram; one more bucket counts the rest.
DURATION_BOUNDS_MS: tuple[int, ...] = (
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
)
HOUR_MS = 3_600_000

#: History types that count towards some stat; a tailer need not decode the others.
COUNTED_TYPES = frozenset(
    cls.__name__ for cls in (h.RunScheduled, h.RunStarted, h.StepErrored, *h.FINAL_TYPES)
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFacts:
    """What a run's later events need from its earlier ones."""

    function_id: str
    queued_at: int
    started_at: int | None = None


def _empty_histogram() -> tuple[int, ...]:
    return (0,) * (len(DURATION_BOUNDS_MS) + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsRow:
    """One ``function_stats`` row; field names are the column names."""

    function_id: str
    hour: datetime
    scheduled: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    retries: int = 0
    queue_delay_ms: int = 0
    duration_ms: int = 0
    duration_count: int = 0
    duration_histogram: tuple[int, ...] = field(default_factory=_empty_histogram)

    @property
    def key(self) -> tuple[str, datetime]:
        return (self.function_id, self.hour)

    def __add__(self, other: StatsRow) -> StatsRow:
        if other.key != self.key:
            raise ValueError(f"cannot add stats of {other.key} to {self.key}")
        sums = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(StatsRow)
            if f.name not in ("function_id", "hour", "duration_histogram")
        }
        histogram = tuple(
            a + b for a, b in zip(self.duration_histogram, other.duration_histogram, strict=True)
        )
        return replace(self, duration_histogram=histogram, **sums)


def hour_of(ms: int) -> datetime:
    return datetime.fromtimestamp((ms // HOUR_MS) * HOUR_MS / 1000, UTC)


def bucket_of(duration_ms: int) -> int:
    for index, bound in enumerate(DURATION_BOUNDS_MS):
        if duration_ms <= bound:
            return index
    return len(DURATION_BOUNDS_MS)


def facts_of(events: Iterable[h.HistoryEvent]) -> RunFacts | None:
    """The facts of a run from (at least) its ``RunScheduled`` and ``RunStarted`` events."""
    facts: RunFacts | None = None
    started: int | None = None
    for event in events:
        if isinstance(event, h.RunScheduled):
            facts = RunFacts(function_id=event.function_id, queued_at=event.at)
        elif isinstance(event, h.RunStarted):
            started = event.at
    return None if facts is None else replace(facts, started_at=started)


def contribution(event: h.HistoryEvent, facts: RunFacts) -> StatsRow | None:
    """What ``event`` adds to the stats of its run's function; None if it adds nothing."""
    row = StatsRow(function_id=facts.function_id, hour=hour_of(event.at))
    if isinstance(event, h.RunScheduled):
        return replace(row, scheduled=1)
    if isinstance(event, h.RunStarted):
        return replace(row, started=1, queue_delay_ms=max(0, event.at - facts.queued_at))
    if isinstance(event, h.StepErrored):
        return replace(row, retries=1)
    if not isinstance(event, h.FINAL_TYPES):
        return None
    row = replace(
        row,
        completed=int(isinstance(event, h.RunCompleted)),
        failed=int(isinstance(event, h.RunFailed)),
        cancelled=int(isinstance(event, h.RunCancelled)),
        skipped=int(isinstance(event, h.RunSkipped)),
    )
    if facts.started_at is None:
        return row  # never started: no duration to speak of
    duration = max(0, event.at - facts.started_at)
    histogram = [0] * (len(DURATION_BOUNDS_MS) + 1)
    histogram[bucket_of(duration)] = 1
    return replace(row, duration_ms=duration, duration_count=1, duration_histogram=tuple(histogram))


def accumulate(totals: dict[tuple[str, datetime], StatsRow], row: StatsRow | None) -> None:
    """Add ``row`` into ``totals`` (keyed by function and hour)."""
    if row is None:
        return
    current = totals.get(row.key)
    totals[row.key] = row if current is None else current + row


def percentile(histogram: Sequence[int], q: float) -> int | None:
    """Upper bound (ms) of the bucket holding the ``q`` quantile; None if nothing was counted.

    The overflow bucket reports the largest bound: the estimate is "at least this long".
    """
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank and count:
            return DURATION_BOUNDS_MS[min(index, len(DURATION_BOUNDS_MS) - 1)]
    return DURATION_BOUNDS_MS[-1]
