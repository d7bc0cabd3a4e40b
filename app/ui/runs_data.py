"""What the runs list and the run page show, read straight from the read side.

The list is one keyset page of the ``runs`` view (``read_queries.list_runs``: an index range
scan, never a count or an offset), plus the small registry for function names.  The run page
is the run's view row, its trigger events, the trace folded from its history, laid out by
``app.ui.timeline``, and the run's dead letters (an item of it that kept failing internally and
was set aside: the run is stuck until an operator retries or discards it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.registry import store as registry
from app.store import dead_letters as dead_store
from app.store import read_queries as rq
from app.store.db import AsyncConn
from app.store.history import load_history
from app.store.runs_view import load_run_row
from app.ui import timeline
from app.ui.filters import RunsQuery, encode_cursor
from app.ui.timeline import Output, Row
from domain import history as h
from domain.events import INVOKED_EVENT_NAME
from domain.ids import is_ulid
from domain.lifecycle import defer_event_id
from domain.run import RunState, fold
from projections.runs import RunRow
from projections.traces import RUN_OUTPUT, fold_trace

if TYPE_CHECKING:
    from app.main import Services

PAGE_SIZE = 50
RECENT = 20
#: A run has one or two queue items at a time, so more dead letters than this are not expected.
RUN_DEAD_LETTERS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class RunItem:
    row: RunRow
    function_name: str
    trigger: str
    duration_ms: int | None

    @property
    def ended(self) -> bool:
        return self.row.ended_at is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunsPage:
    items: list[RunItem]
    next_cursor: str | None
    functions: list[registry.FunctionRecord]
    apps: list[registry.AppRecord]


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerEvent:
    internal_id: str
    event: dict[str, Any]
    stored: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPage:
    item: RunItem
    function: registry.FunctionRecord | None
    events: list[TriggerEvent]
    timeline: Row
    output: Output | None
    #: ``(step id, name)`` of the steps a rerun may start from, in the order the run met them.
    steps: list[tuple[str, str]]
    #: The run's items set aside after failing internally, newest first.
    dead_letters: list[dead_store.DeadLetter]
    #: What ``defer()`` asked for, in the order the SDK reported it.
    defers: list[DeferItem]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeferItem:
    name: str
    fn_slug: str
    #: AfterRun (still due, or scheduled once the run ended), Rejected or Aborted.
    status: str
    reason: str
    #: The ``inngest/deferred.schedule`` event, once the run has ended and it was sent.
    event_id: str | None


def defer_items(state: RunState) -> list[DeferItem]:
    return [
        DeferItem(
            name=str(entry.get("name") or hashed_id),
            fn_slug=str(entry["fn_slug"]),
            status=str(entry["status"]),
            reason=str(entry.get("reason") or ""),
            event_id=defer_event_id(state.run_id, hashed_id, 0)
            if state.is_finished and entry["status"] == "AfterRun"
            else None,
        )
        for hashed_id, entry in state.defers.items()
    ]


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def trigger_label(row: RunRow) -> str:
    if row.cron:
        return f"cron {row.cron}"
    name = row.event_name or "—"
    if name == INVOKED_EVENT_NAME:
        return "invoked"
    return f"{name} (batch)" if row.batch_id else name


def run_item(row: RunRow, names: dict[str, str], now_ms: int) -> RunItem:
    duration = None
    if row.started_at is not None:
        end = _ms(row.ended_at) if row.ended_at is not None else now_ms
        duration = max(end - _ms(row.started_at), 0)
    return RunItem(
        row=row,
        function_name=names.get(row.function_id, row.function_slug),
        trigger=trigger_label(row),
        duration_ms=duration,
    )


async def function_names(conn: AsyncConn) -> tuple[list[registry.FunctionRecord], dict[str, str]]:
    """Every function (archived ones too: old runs still name them) and names by id."""
    records = await registry.list_functions(conn, include_archived=True)
    return records, {r.id: r.name for r in records}


def _now(now_ms: int) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, UTC)


async def load_runs_page(services: Services, q: RunsQuery, now_ms: int) -> RunsPage:
    async with services.read_db.connection() as conn:
        rows = await rq.list_runs(
            conn, q.to_filter(_now(now_ms)), rq.RunsOrder(), after=q.position,
            limit=PAGE_SIZE + 1,
        )  # fmt: skip
        records, names = await function_names(conn)
        apps = await registry.list_apps(conn)
    shown = rows[:PAGE_SIZE]
    more = len(rows) > PAGE_SIZE
    cursor = encode_cursor(rq.position_of(shown[-1], rq.RunsOrder())) if more else None
    return RunsPage(
        items=[run_item(r, names, now_ms) for r in shown],
        next_cursor=cursor,
        functions=[r for r in records if not r.archived],
        apps=[a for a in apps if not a.is_placeholder],
    )


async def recent_runs(services: Services, function_id: str, now_ms: int) -> list[RunItem]:
    """The newest runs of one function (its page), via ``(function_id, queued_at)``."""
    filt = rq.RunsFilter(
        since=datetime(1970, 1, 1, tzinfo=UTC), until=_now(now_ms + 1000),
        function_ids=(function_id,),
    )  # fmt: skip
    async with services.read_db.connection() as conn:
        rows = await rq.list_runs(conn, filt, rq.RunsOrder(), limit=RECENT)
        _, names = await function_names(conn)
    return [run_item(r, names, now_ms) for r in rows]


async def runs_of_event(services: Services, internal_id: str, now_ms: int) -> list[RunItem]:
    async with services.read_db.connection() as conn:
        rows = await rq.runs_for_events(conn, [internal_id])
        _, names = await function_names(conn)
    return [run_item(r, names, now_ms) for r in rows]


def _trigger_events(
    row: RunRow, stored: list[rq.EventRecord], history: list[h.HistoryEvent]
) -> list[TriggerEvent]:
    found = [TriggerEvent(internal_id=e.internal_id, event=e.as_event(), stored=True)
             for e in stored]  # fmt: skip
    if len(found) < len(row.event_ids) and history and isinstance(history[0], h.RunScheduled):
        # Events past retention are gone from ``events``; the run's history still has them.
        seen = {e.internal_id for e in found}
        for internal_id, event in zip(row.event_ids, history[0].events, strict=False):
            if internal_id not in seen and isinstance(event, dict):
                found.append(TriggerEvent(internal_id=internal_id, event=event, stored=False))
    return found


def rerun_steps(root: Row) -> list[tuple[str, str]]:
    return [(c.step_id, c.name) for c in root.children if c.step_id is not None]


async def load_run(services: Services, run_id: str, now_ms: int) -> RunPage | None:
    if not is_ulid(run_id):
        return None
    async with services.read_db.connection() as conn:
        row = await load_run_row(conn, run_id.upper())
        if row is None:
            return None
        history = await load_history(conn, row.run_id)
        stored = await rq.events_by_ids(conn, row.event_ids)
        records, names = await function_names(conn)
        dead = await dead_store.list_dead(conn, limit=RUN_DEAD_LETTERS, run_id=row.run_id)
    function = next((r for r in records if r.id == row.function_id), None)
    trace = fold_trace(history, name=function.name if function else None)
    root = timeline.build(trace, now_ms)
    return RunPage(
        item=run_item(row, names, now_ms),
        function=function,
        events=_trigger_events(row, stored, history),
        timeline=root,
        output=timeline.output_of(trace.outputs.get(RUN_OUTPUT)),
        steps=rerun_steps(root),
        dead_letters=dead,
        defers=defer_items(fold(history)),
    )
