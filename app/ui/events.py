"""Event pages: the live stream (``/events``), an event's page, and sending or replaying one.

The stream is one page of ``read_queries.list_events`` (newest first by internal id, so the
cursor is the last id shown and the query is a backward primary-key scan) and the runs those
events started, found with one ``event_ids && …`` lookup on the GIN index.  Sending and
replaying share ``/events/send``: a replay is a new event (new id, no idempotency key) with
the original's name and data, editable before it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from app.store import read_queries as rq
from app.ui import actions, runs_data
from app.ui.render import not_found, now_ms, page, pretty_json, redirect, services_of
from domain.ids import is_ulid

if TYPE_CHECKING:
    from app.main import Services

PAGE_SIZE = 50
DEFAULT_DATA = "{\n  \n}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventItem:
    record: rq.EventRecord
    runs: list[runs_data.RunItem]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsPage:
    items: list[EventItem]
    next_cursor: str | None
    name: str
    internal: bool
    before: str


async def load_events(services: Services, name: str, internal: bool, before: str, now: int
                      ) -> EventsPage:  # fmt: skip
    filt = rq.EventsFilter(
        names=(name,) if name else (), include_internal=internal, before_id=before or None
    )
    async with services.read_db.connection() as conn:
        records = await rq.list_events(conn, filt, limit=PAGE_SIZE + 1)
        shown = records[:PAGE_SIZE]
        runs = await rq.runs_for_events(conn, [r.internal_id for r in shown])
        _, names = await runs_data.function_names(conn)
    items = [
        EventItem(record=r, runs=[runs_data.run_item(x, names, now)
                                  for x in runs if r.internal_id in x.event_ids])
        for r in shown
    ]  # fmt: skip
    more = len(records) > PAGE_SIZE
    return EventsPage(items=items, next_cursor=shown[-1].internal_id if more else None,
                      name=name, internal=internal, before=before)  # fmt: skip


@get("/events", name="ui-events")
async def events_list(request: Request[Any, Any, Any]) -> Response[Any]:
    """Received events, newest first, with the runs each started; refreshes itself."""
    params = request.query_params
    before = str(params.get("before") or "")
    if before and not is_ulid(before):
        return redirect("/events", error="The page cursor is not valid.")
    data = await load_events(
        services_of(request), str(params.get("name") or "").strip(),
        params.get("internal") == "1", before.upper(), now_ms(request),
    )  # fmt: skip
    return page(request, "events.html", fragment="_events_table.html", data=data)


@get("/events/{event_id:str}", name="ui-event")
async def event_page(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[Any]:
    """One event: its JSON, and the runs it triggered (refreshing)."""
    services = services_of(request)
    record = None
    if is_ulid(event_id):
        async with services.read_db.connection() as conn:
            record = await rq.event_by_internal_id(conn, event_id.upper())
    if record is None:
        return not_found(request, f"event {event_id}")
    runs = await runs_data.runs_of_event(services, record.internal_id, now_ms(request))
    return page(request, "event.html", fragment="_event_runs.html", event=record, runs=runs)


@get("/events/send", name="ui-send-event")
async def send_form(request: Request[Any, Any, Any]) -> Response[Any]:
    """The send form, empty or (``?replay=ID``) holding a stored event's name and data."""
    replay = str(request.query_params.get("replay") or "")
    name, data = "", DEFAULT_DATA
    if replay:
        record = None
        if is_ulid(replay):
            async with services_of(request).read_db.connection() as conn:
                record = await rq.event_by_internal_id(conn, replay.upper())
        if record is None:
            return not_found(request, f"event {replay}")
        name, data = record.name, pretty_json(record.data)
    return page(request, "send_event.html", name=name, data=data, replay=replay, form_error=None)


@post("/events/send", status_code=303)
async def send(request: Request[Any, Any, Any]) -> Response[Any]:
    """Validate and store the event, then show it (and the runs it starts)."""
    form = await request.form()
    name, data = str(form.get("name") or ""), str(form.get("data") or "")
    replay = str(form.get("replay") or "")
    try:
        internal_id = await actions.send_event(services_of(request), name, data)
    except actions.FormError as exc:
        return page(request, "send_event.html", status=400, name=name, data=data,
                    replay=replay, form_error=str(exc))  # fmt: skip
    notice = f"Replayed {replay} as a new event." if replay else "Event sent."
    return redirect(f"/events/{internal_id}", notice=notice)


ROUTES = [events_list, send_form, event_page, send]
