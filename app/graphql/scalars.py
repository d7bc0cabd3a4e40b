"""The custom scalars of Inngest's GraphQL schema and how their values travel.

``ULID``, ``UUID`` (validated strings), ``Time`` (RFC 3339 with milliseconds, always UTC ``Z``),
``Bytes`` (a string holding raw JSON text — clients ``JSON.parse`` it), ``Map`` (a JSON
object), ``Unknown`` (any JSON value), ``Int64``, ``Uint`` and the span metadata scalars
(``SpanMetadataKind`` and ``SpanMetadataScope`` strings, ``SpanMetadataValues`` a JSON
object), which are output only.  Each is a ``NewType`` so that
resolvers are type-checked, mapped to its GraphQL definition in ``SCALARS``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from domain.ids import is_ulid

ULID = NewType("ULID", str)
UUID = NewType("UUID", str)
Time = NewType("Time", datetime)
Bytes = NewType("Bytes", str)
Map = NewType("Map", dict[str, Any])
Unknown = NewType("Unknown", object)
Int64 = NewType("Int64", int)
Uint = NewType("Uint", int)
SpanMetadataKind = NewType("SpanMetadataKind", str)
SpanMetadataScope = NewType("SpanMetadataScope", str)
SpanMetadataValues = NewType("SpanMetadataValues", dict[str, Any])


def iso(value: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, as Go's clients parse it."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def time_of(value: datetime | None) -> Time | None:
    return None if value is None else Time(value)


def ms_time(ms: int) -> Time:
    return Time(datetime.fromtimestamp(ms / 1000, UTC))


def json_text(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is (what ``Bytes`` fields carry)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parse_ulid(value: object) -> ULID:
    if not isinstance(value, str) or not is_ulid(value):
        raise ValueError(f"{value!r} is not a ULID")
    return ULID(value.upper())


def _parse_uuid(value: object) -> UUID:
    try:
        return UUID(str(uuid.UUID(str(value))))
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None


def _parse_time(value: object) -> Time:
    if not isinstance(value, str):
        raise ValueError("a Time is an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 time") from None
    return Time(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def _serialize_time(value: datetime) -> str:
    return iso(value)


def _parse_map(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("a Map is a JSON object")
    return value


def _parse_bytes(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("Bytes is a string of JSON text")
    return value


def _parse_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected an integer")
    return value


def _same(value: object) -> object:
    return value


SCALARS: dict[object, ScalarDefinition] = {
    ULID: strawberry.scalar(name="ULID", serialize=str, parse_value=_parse_ulid),
    UUID: strawberry.scalar(name="UUID", serialize=str, parse_value=_parse_uuid),
    Time: strawberry.scalar(name="Time", serialize=_serialize_time, parse_value=_parse_time),
    Bytes: strawberry.scalar(name="Bytes", serialize=str, parse_value=_parse_bytes),
    Map: strawberry.scalar(name="Map", serialize=_same, parse_value=_parse_map),
    Unknown: strawberry.scalar(name="Unknown", serialize=_same, parse_value=_same),
    Int64: strawberry.scalar(name="Int64", serialize=int, parse_value=_parse_int),
    Uint: strawberry.scalar(name="Uint", serialize=int, parse_value=_parse_int),
    SpanMetadataKind: strawberry.scalar(name="SpanMetadataKind", serialize=str),
    SpanMetadataScope: strawberry.scalar(name="SpanMetadataScope", serialize=str),
    SpanMetadataValues: strawberry.scalar(
        name="SpanMetadataValues", serialize=_same, parse_value=_parse_map
    ),
}
