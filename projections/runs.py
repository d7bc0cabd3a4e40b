"""The runs view: ``apply(row, event)`` folds a run's history into its one view row.

Only transitions a reader can see change the row (scheduled, started, ended); step events leave
it alone, so the live path writes the view three times per run, not once per step.  The same
function serves the live path and ``projections rebuild``, which is why they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from domain import history as h
from domain.run import RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRow:
    run_id: str
    function_id: str
    function_slug: str
    function_version: int
    app_id: str
    status: str
    queued_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    event_ids: tuple[str, ...] = ()
    event_name: str | None = None
    batch_id: str | None = None
    cron: str | None = None
    original_run_id: str | None = None
    output: Any = None


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def apply(row: RunRow | None, event: h.HistoryEvent) -> RunRow | None:
    """The row after ``event``; the same object when the event does not show in the view."""
    if isinstance(event, h.RunScheduled):
        first = event.events[0] if event.events else {}
        return RunRow(
            run_id=event.run_id,
            function_id=event.function_id,
            function_slug=event.function_slug,
            function_version=event.function_version,
            app_id=event.app_id,
            status=RunStatus.QUEUED.value,
            queued_at=_dt(event.at),
            event_ids=event.event_ids,
            event_name=first.get("name") if isinstance(first, dict) else None,
            batch_id=event.batch_id,
            cron=event.cron,
            original_run_id=event.original_run_id,
        )
    if row is None:
        return None
    if isinstance(event, h.RunStarted):
        return replace(row, status=RunStatus.RUNNING.value, started_at=_dt(event.at))
    if isinstance(event, h.RunCompleted):
        return _ended(row, event, RunStatus.COMPLETED, event.output)
    if isinstance(event, h.RunFailed):
        return _ended(row, event, RunStatus.FAILED, event.error)
    if isinstance(event, h.RunCancelled):
        return _ended(row, event, RunStatus.CANCELLED, None)
    if isinstance(event, h.RunSkipped):
        return _ended(row, event, RunStatus.SKIPPED, None)
    return row


def _ended(row: RunRow, event: h.HistoryEvent, status: RunStatus, output: Any) -> RunRow:
    return replace(row, status=status.value, ended_at=_dt(event.at), output=output)
