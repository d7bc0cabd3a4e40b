"""Identifiers: ULIDs for runs, events and queue leases; UUIDs for apps and functions.

Ids are ``NewType``s over ``str`` so that a run id cannot be passed where an event id is wanted.
The protocol fixes the formats: runs and internal event ids are ULIDs (Crockford base32, 26
characters); apps and functions are UUIDs, derived deterministically from their names so that
the same app synced twice keeps its ids.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import NewType

from ulid import ULID

RunId = NewType("RunId", str)
EventId = NewType("EventId", str)
AppId = NewType("AppId", str)
FunctionId = NewType("FunctionId", str)
JobId = NewType("JobId", str)

#: Dev-server tenancy (protocol §0): every Stepwell install is a single account/environment.
ACCOUNT_ID = "00000000-0000-4000-a000-000000000000"
ENV_ID = "00000000-0000-4000-b000-000000000000"


def new_ulid(ms: int | None = None) -> str:
    """A fresh ULID; ``ms`` pins its timestamp (milliseconds since the epoch)."""
    if ms is None:
        return str(ULID())
    return str(ULID.from_timestamp(ms / 1000))


def new_run_id(ms: int | None = None) -> RunId:
    return RunId(new_ulid(ms))


def ulid_ms(value: str) -> int:
    """The millisecond timestamp encoded in a ULID's first 48 bits."""
    return ULID.from_str(value).milliseconds


def is_ulid(value: str) -> bool:
    try:
        ULID.from_str(value)
    except ValueError:
        return False
    return True


def deterministic_uuid(name: str) -> str:
    """UUIDv5 in the OID namespace, as Inngest's ``util.DeterministicUUID``."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, name))


def deterministic_ulid(ms: int, seed: str) -> str:
    """A ULID at ``ms`` whose random part is derived from ``seed``: same inputs, same id."""
    entropy = hashlib.sha256(seed.encode()).digest()[:10]
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + entropy))
