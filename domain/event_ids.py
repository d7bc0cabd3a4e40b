"""Deterministic internal event ids from the ``x-inngest-event-id-seed`` header.

Both SDKs send ``"<unix ms>,<base64 of 10 random bytes>"`` with every ``POST /e/{key}`` and keep
it fixed across retries of the same send.  This module owns parsing that header and deriving,
for the i-th event of the request, the ULID the Go server would mint: timestamp = the header's
milliseconds, entropy = the ten bytes with ``i`` added to bytes 6-9 read as a big-endian
uint32 (wrapping).  A retried send therefore gets the same ids back.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ulid import ULID

ENTROPY_BYTES = 10
# A ULID's timestamp is 48 bits; Go fails to build a ULID past it and falls back to a random id.
_MAX_ULID_MS = 2**48 - 1
_COUNTER_START = 6
_UINT32 = 2**32
# Go's strconv.ParseInt: optional sign, ASCII digits only.
_MILLIS = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class EventIdSeed:
    """A parsed seed header: the ULID timestamp and the ten entropy bytes as sent."""

    millis: int
    entropy: bytes


def parse_seed(header: str) -> EventIdSeed | None:
    """Parse the header value; ``None`` when it is absent or malformed (ids are then random)."""
    parts = header.split(",")
    if len(parts) != 2 or not _MILLIS.fullmatch(parts[0]):
        return None
    millis = int(parts[0])
    if not 0 < millis <= _MAX_ULID_MS:
        return None
    entropy = _decode_entropy(parts[1])
    if entropy is None:
        return None
    return EventIdSeed(millis=millis, entropy=entropy)


def _decode_entropy(text: str) -> bytes | None:
    try:
        # Standard, padded alphabet only, as Go's base64.StdEncoding.
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == ENTROPY_BYTES else None


def seeded_event_id(seed: EventIdSeed, index_1_based: int) -> str:
    """The 26-character ULID for the event at position ``index_1_based`` of the request.

    ``POST /e/`` numbers its events from 1; ``POST /invoke`` passes 0 (Go does the same).
    """
    counter = int.from_bytes(seed.entropy[_COUNTER_START:], "big")
    bumped = ((counter + index_1_based) % _UINT32).to_bytes(4, "big")
    entropy = seed.entropy[:_COUNTER_START] + bumped
    return str(ULID.from_bytes(seed.millis.to_bytes(6, "big") + entropy))
