"""The events table: durable insert of accepted events (with their processing items), reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from app.store.db import AsyncConn
from app.store.queue import ENQUEUE_TEMPLATE, enqueue_params, to_dt
from domain.function_config import trigger_patterns
from domain.lifecycle import FINISHED
from domain.queue import ItemKind, ItemSpec, event_job_id

INSERT_EVENTS = """
INSERT INTO events (internal_id, id, name, data, "user", ts, v, received_at, source)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::jsonb[], %s::jsonb[],
                     %s::bigint[], %s::text[], %s::timestamptz[], %s::text[])
ON CONFLICT (internal_id) DO NOTHING
"""

# Storing events and creating their processing items in one statement, the items only for
# events this statement inserted: a client retrying a send whose answer it lost (same seeded
# ids) stores nothing twice and, above all, gets no event processed twice — the first send's
# item may be long gone, so the queue's unique job id alone could not refuse the second.
INSERT_AND_ENQUEUE = (
    f"WITH stored AS ({INSERT_EVENTS.strip()}\nRETURNING internal_id),"
    + ENQUEUE_TEMPLATE.format(
        gate=f"x.job_id IN (SELECT '{event_job_id('')}' || internal_id FROM stored)"
    )
    + "\nSELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM woke)"
)

# With the registry version (migration 0008), read in the same statement, so the caller can
# tell whether its in-memory trigger index is current.
LOAD_EVENT = """
SELECT internal_id, id, name, data, "user", ts, v, received_at,
       (SELECT version FROM registry_version WHERE id = 1)
  FROM events WHERE internal_id = %s
"""


def event_json(row: Sequence[Any]) -> dict[str, Any]:
    """The event as SDKs see it: ``name, data, user, id, ts`` (+ ``v``)."""
    event: dict[str, Any] = {
        "name": row[2],
        "data": row[3],
        "user": row[4],
        "id": row[1],
        "ts": row[5],
    }
    if row[6]:
        event["v"] = row[6]
    return event


async def insert_events(
    conn: AsyncConn,
    events: Sequence[tuple[str, Mapping[str, Any]]],
    received_at: datetime,
    now_ms: int,
    source: str = "api",
    *,
    process: bool = True,
) -> None:
    """Store ``(internal_id, event)`` pairs and enqueue one processing item per event.

    Both happen in the caller's transaction, so an event is never stored without being
    processed later, nor processed without being stored.
    """
    if not events:
        return
    params = event_params(events, received_at, now_ms, source)
    if not process:  # recorded for the record only (e.g. a cron tick's timer event)
        await conn.execute(INSERT_EVENTS, params)
        return
    items, listen = event_items(events, now_ms, source)
    await conn.execute(
        INSERT_AND_ENQUEUE, (*params, *enqueue_params(items, listen=listen), to_dt(now_ms))
    )


def event_params(
    events: Sequence[tuple[str, Mapping[str, Any]]],
    received_at: datetime,
    now_ms: int,
    source: str,
) -> tuple[object, ...]:
    """The parameters of ``INSERT_EVENTS`` (also used in the one-statement transition)."""
    return (
        [iid for iid, _ in events],
        [str(e.get("id") or iid) for iid, e in events],
        [str(e["name"]) for _, e in events],
        [Jsonb(e.get("data") or {}) for _, e in events],
        [Jsonb(e.get("user") or {}) for _, e in events],
        [int(e.get("ts") or now_ms) for _, e in events],
        [e.get("v") for _, e in events],
        [received_at] * len(events),
        [source] * len(events),
    )


def event_items(
    events: Sequence[tuple[str, Mapping[str, Any]]], now_ms: int, source: str
) -> tuple[list[ItemSpec], dict[str, list[str]]]:
    """The processing items of ``events`` and, by job id, the ``listen`` guards of those that
    are processed only if something listens (see ``app/store/queue.py``)."""
    items = [
        ItemSpec(
            kind=ItemKind.EVENT,
            job_id=event_job_id(iid),
            available_at=now_ms,
            payload={"internal_id": iid},
            max_attempts=20,
        )
        for iid, _ in events
    ]
    # Every run emits function.finished; most have no invoking parent and no function
    # triggered by it, so its processing item is created only if something listens.
    listen = {
        event_job_id(iid): trigger_patterns(FINISHED)
        for iid, e in events
        if source == "internal" and e["name"] == FINISHED
    }
    return items, listen


#: How JSON writes U+0000, which PostgreSQL's ``text`` and ``jsonb`` cannot hold.
_ESCAPED_NUL = b"\\u0000"
UNSTORABLE_NUL = (
    "event cannot be stored: it contains the character U+0000 (\\u0000), which PostgreSQL "
    "text cannot hold"
)


def first_unstorable(events: Sequence[Mapping[str, Any]], body: bytes) -> tuple[int, str] | None:
    """The position of the first of ``events`` (parsed from ``body``) that the events table
    cannot hold, and why; None when all of them fit.

    Found before the insert so that the events before it can be stored, as they are when an
    event breaks one of Inngest's rules.  Only a body that spells the escape is searched.
    """
    if _ESCAPED_NUL not in body:
        return None
    for index, event in enumerate(events):
        if _holds_nul(event):
            return index, UNSTORABLE_NUL
    return None


def _holds_nul(value: object) -> bool:
    pending = [value]
    while pending:  # iterative: a deeply nested event must not exhaust the recursion limit
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def received(now_ms: int) -> datetime:
    return to_dt(now_ms)


async def load_event(
    conn: AsyncConn, internal_id: str
) -> tuple[dict[str, Any], datetime, int | None] | None:
    """The stored event (as SDKs see it), when it was received and the registry version;
    None if unknown."""
    cur = await conn.execute(LOAD_EVENT, (internal_id,), prepare=True)
    row = await cur.fetchone()
    return None if row is None else (event_json(row), row[7], row[8])
