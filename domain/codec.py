"""The stored envelope of a history event: ``type``, ``schema_version``, ``payload``.

The codec is the only place that maps between rows and ``domain.history`` objects.  Old rows are
upcast on read: ``UPCASTERS[(type, version)]`` turns a payload of that version into the next
one, so a row written years ago still decodes into today's dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from domain.errors import UnknownHistoryType
from domain.history import HISTORY_TYPES, HistoryEvent

Payload = dict[str, Any]

def _op_unrecorded(payload: Payload) -> Payload:
    return {**payload, "op": ""}


#: (type name, stored version) -> function producing the payload of version + 1.
UPCASTERS: dict[tuple[str, int], Callable[[Payload], Payload]] = {
    # v2 names the failed op (so a trace can show a failed step.ai.infer as one); v1 did not.
    ("StepErrored", 1): _op_unrecorded,
    ("StepFailed", 1): _op_unrecorded,
}

_TUPLE_FIELDS: dict[str, frozenset[str]] = {}


class Envelope(NamedTuple):
    type: str
    schema_version: int
    payload: Payload


def encode(event: HistoryEvent) -> Envelope:
    payload = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return Envelope(type(event).__name__, type(event).SCHEMA_VERSION, payload)


def decode(type_name: str, schema_version: int, payload: Mapping[str, Any]) -> HistoryEvent:
    cls = HISTORY_TYPES.get(type_name)
    if cls is None:
        raise UnknownHistoryType(type_name)
    data = dict(payload)
    version = schema_version
    while version < cls.SCHEMA_VERSION:
        data = UPCASTERS[(type_name, version)](data)
        version += 1
    for name in _tuple_fields(cls):
        if name in data and isinstance(data[name], list):
            data[name] = tuple(tuple(v) if isinstance(v, list) else v for v in data[name])
    return cls(**data)


def _tuple_fields(cls: type[HistoryEvent]) -> frozenset[str]:
    # JSON has no tuples: fields annotated as tuples come back as lists and are restored here,
    # so that decode(encode(e)) == e holds for every event.
    cached = _TUPLE_FIELDS.get(cls.__name__)
    if cached is None:
        cached = frozenset(
            f.name for f in dataclasses.fields(cls) if str(f.type).startswith("tuple")
        )
        _TUPLE_FIELDS[cls.__name__] = cached
    return cached
