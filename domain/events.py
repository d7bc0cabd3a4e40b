"""Inbound events: the rules an event must pass before it is stored, and its internal ids.

``POST /e/{key}`` and ``POST /invoke/{slug}`` hand this module parsed JSON; it answers with the
event dicts that ``app.store.events.insert_events`` stores.  The rules are Inngest's
(``pkg/event/inbound.go``, ``event.go``, ``eventstream.go``, ``consts.go``), with Go's error
texts where Go has the rule: a non-empty ``name`` outside the reserved ``inngest/`` prefix,
object ``data``/``user``, string ``id``/``v``, an integer millisecond ``ts`` between 1980 and
2100 (0 or absent means "now"), and size and count limits.  Unknown top-level keys are dropped,
as Go's struct decoding drops them.

A request's events are judged in order and judging stops at the first bad one, which is what
Go's streaming handler does: the events before it are still stored and their ids returned
next to the error (``NormalizedEvents``).  Internal ids come from the SDKs'
``x-inngest-event-id-seed`` header (``domain.event_ids``) so that a retried send gets the same
ids back; without a usable seed they are fresh ULIDs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from domain.errors import InvalidEvent
from domain.event_ids import parse_seed, seeded_event_id

#: ``consts.MaxEvents``: the most events one request may carry.
MAX_EVENTS_PER_REQUEST = 5_000
#: ``consts.AbsoluteMaxEventSize`` (3 MiB), the per-event limit Go's ``/e/`` handler passes to
#: its stream parser.  (``consts.DefaultMaxEventSize``, 512 KiB, is Inngest Cloud's default
#: plan limit; the open-source server does not apply it.)
MAX_EVENT_BYTES = 3 * 1024 * 1024
#: Stepwell's own cap on a whole request body (Go streams and has none): ten events of the
#: maximum size, or a full batch of typical ones, while bounding what one request can make us
#: hold in memory.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: ``consts.MaxEventNameLength`` (enforced by Go's v2 event API; v1 ``/e/`` does not check).
MAX_NAME_LENGTH = 512

RESERVED_PREFIX = "inngest/"
INVOKED_EVENT_NAME = "inngest/function.invoked"
#: The key under ``data`` where Inngest keeps its own metadata; users may not set it.
INTERNAL_DATA_KEY = "_inngest"

#: Go accepts ``ts`` from 1980-01-01 to 2100-01-01 (both inclusive: it rejects only
#: ``Before(start)`` and ``After(end)``).
MIN_TS_MS = 315_532_800_000
MAX_TS_MS = 4_102_444_800_000


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalizedEvents:
    """The storable events of one request: those before its first bad event, and that
    event's rejection (``None`` when every event passed)."""

    events: list[dict[str, Any]]
    error: InvalidEvent | None


def normalize_event(
    raw: Any, index: int, now_ms: int, *, check_size: bool = True
) -> dict[str, Any]:
    """The storable form of the user event at (0-based) ``index`` of a request.

    ``check_size`` measures the event's compact JSON; callers that already know the whole
    body is within ``MAX_EVENT_BYTES`` skip that cost.
    """
    if not isinstance(raw, dict):
        raise InvalidEvent(index, "an event must be a JSON object")
    name = raw.get("name")
    if name is None or name == "":
        raise InvalidEvent(index, "event name is empty")
    if not isinstance(name, str):
        raise InvalidEvent(index, "event name must be a string")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidEvent(index, f"event name cannot exceed {MAX_NAME_LENGTH} characters")
    if name[: len(RESERVED_PREFIX)].lower() == RESERVED_PREFIX:
        raise InvalidEvent(index, f"event name is reserved for internal use: {name}")
    if check_size:
        _check_size(raw, index)
    event = _common_fields(raw, index, now_ms)
    event["name"] = name
    data = event["data"]
    if INTERNAL_DATA_KEY in data:
        # Only the server writes ``_inngest`` (invoke routing, run status); a user-supplied
        # copy could impersonate an invocation, so it is removed, as Go removes it.
        event["data"] = {k: v for k, v in data.items() if k != INTERNAL_DATA_KEY}
    return event


def normalize_events(raws: Sequence[Any], now_ms: int, body_bytes: int) -> NormalizedEvents:
    """The events of one request, judged in order up to the first bad one.

    Go's handler stores each event as its stream parser hands it over, so a bad event stops
    the request there and the events before it stay stored; this returns exactly those.  The
    count limit works the same way: the first ``MAX_EVENTS_PER_REQUEST`` events pass and the
    one after them is the error.
    """
    # No event can be larger than the body that carries it, so small bodies skip measuring.
    check_size = body_bytes > MAX_EVENT_BYTES
    events: list[dict[str, Any]] = []
    for index, raw in enumerate(raws):
        try:
            if index == MAX_EVENTS_PER_REQUEST:
                raise InvalidEvent(
                    index, f"Cannot have more than {MAX_EVENTS_PER_REQUEST} events in a batch"
                )
            events.append(normalize_event(raw, index, now_ms, check_size=check_size))
        except InvalidEvent as exc:
            return NormalizedEvents(events=events, error=exc)
    return NormalizedEvents(events=events, error=None)


def invocation_event(raw: Any, fn_id: str, now_ms: int) -> dict[str, Any]:
    """The ``inngest/function.invoked`` event that ``POST /invoke/{fn_id}`` stores.

    The body is event-like (``data``, ``user``, ``id``, ``ts``, ``v``); its ``name`` and any
    ``data._inngest`` are replaced.  Go's metadata fields are all present; ``expire`` 0 and no
    ``correlation_id`` mean that no run waits for this invocation to finish.
    """
    if not isinstance(raw, dict):
        raise InvalidEvent(0, "the invocation body must be a JSON object")
    _check_size(raw, 0)
    event = _common_fields(raw, 0, now_ms)
    event["name"] = INVOKED_EVENT_NAME
    event["data"] = {
        **event["data"],
        INTERNAL_DATA_KEY: {
            "fn_id": fn_id,
            "source_app_id": "",
            "source_fn_id": "",
            "source_fn_v": 0,
            "expire": 0,
            "gid": "",
            "name": "",
        },
    }
    return event


def event_ids_for(
    count: int, seed_header: str | None, new_ulid: Callable[[], str], *, start: int = 1
) -> list[str]:
    """Internal ids for the ``count`` events of one request, in body order.

    Event *i* (0-based) gets the seed's ULID for position ``start + i``: ``POST /e/`` numbers
    its events from 1, ``POST /invoke`` uses position 0, as Go does.  An absent or malformed
    seed header means fresh random ULIDs, as in Go.
    """
    seed = parse_seed(seed_header) if seed_header else None
    if seed is None:
        return [new_ulid() for _ in range(count)]
    return [seeded_event_id(seed, i) for i in range(start, start + count)]


def _common_fields(raw: dict[str, Any], index: int, now_ms: int) -> dict[str, Any]:
    """``data``, ``user``, ``ts`` and the optional ``id``/``v``, typed and defaulted.

    ``null`` counts as absent throughout, matching Go's decoding into zero values.
    """
    data = raw.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise InvalidEvent(index, "event data must be a JSON object")
    user = raw.get("user")
    if user is None:
        user = {}
    elif not isinstance(user, dict):
        raise InvalidEvent(index, "event user must be a JSON object")
    event: dict[str, Any] = {"data": data, "user": user, "ts": _timestamp(raw, index, now_ms)}
    event_id = raw.get("id")
    if event_id is not None:
        if not isinstance(event_id, str):
            raise InvalidEvent(index, "event id must be a string")
        if event_id:
            event["id"] = event_id
    version = raw.get("v")
    if version is not None:
        if not isinstance(version, str):
            raise InvalidEvent(index, "event version (v) must be a string")
        if version:
            event["v"] = version
    return event


def _timestamp(raw: dict[str, Any], index: int, now_ms: int) -> int:
    ts = raw.get("ts")
    if ts is None or ts == 0:
        return now_ms
    # bool is an int in Python but not a JSON number; Go also refuses floats for an int64.
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise InvalidEvent(index, "event ts must be an integer (milliseconds since the epoch)")
    if ts < MIN_TS_MS:
        raise InvalidEvent(index, "timestamp is before Jan 1, 1980")
    if ts > MAX_TS_MS:
        raise InvalidEvent(index, "timestamp is after Jan 1, 2100")
    return ts


def _check_size(raw: dict[str, Any], index: int) -> None:
    # Go measures the raw bytes of each array element; measuring the compact re-encoding
    # instead means the sender's whitespace never counts against the limit.
    size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            index, f"Event is over the max size: Max {MAX_EVENT_BYTES} bytes / Size {size} bytes"
        )
