"""What the UI's forms write: send (or replay) an event, invoke a function.

Each action validates its form the way the matching API does — an event goes through
``domain.events.normalize_event`` like an event of a ``POST /e/`` body, an invocation through
``invocation_event`` like ``POST /invoke`` — and stores it with its processing item in one
transaction (``insert_events``).  A form the API would refuse raises ``FormError`` with the
message the page shows next to the form; nothing is stored then.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg

from app.registry import store as registry
from app.store.events import insert_events, received
from domain.errors import InvalidEvent
from domain.events import invocation_event, normalize_event
from domain.ids import new_ulid

if TYPE_CHECKING:
    from app.main import Services

SOURCE = "ui"


class FormError(Exception):
    """A form the server refuses; the message is shown to the user."""


def parse_json_object(text: str, label: str) -> dict[str, Any]:
    """``text`` as a JSON object (an empty field is ``{}``)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FormError(f"{label} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormError(f"{label} must be a JSON object")
    return value


async def _store(services: Services, event: dict[str, Any], now: int) -> str:
    internal_id = new_ulid()
    try:
        async with services.ingest_db.connection() as conn, conn.transaction():
            await insert_events(conn, [(internal_id, event)], received(now), now, source=SOURCE)
    except psycopg.DataError as exc:
        # e.g. "\u0000", which JSON allows and PostgreSQL cannot store.
        raise FormError(f"the event cannot be stored: {exc}".splitlines()[0]) from None
    return internal_id


async def send_event(services: Services, name: str, data_text: str) -> str:
    """Validate and store one event; returns its internal id."""
    data = parse_json_object(data_text, "Data")
    raw = {"name": name.strip(), "data": data}
    now = services.clock.now_ms()
    try:
        event = normalize_event(raw, 0, now)
    except InvalidEvent as exc:
        raise FormError(exc.message) from None
    return await _store(services, event, now)


async def invoke_function(services: Services, slug: str, data_text: str) -> str:
    """Store the ``inngest/function.invoked`` event for ``slug``; returns its internal id."""
    data = parse_json_object(data_text, "Payload")
    now = services.clock.now_ms()
    async with services.ingest_db.connection() as conn:
        fn = await registry.function_by_slug_or_id(conn, slug)
    if fn is None:
        raise FormError(f"function not found: {slug}")
    try:
        event = invocation_event({"data": data}, fn.slug, now)
    except InvalidEvent as exc:
        raise FormError(exc.message) from None
    return await _store(services, event, now)
