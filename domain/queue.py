"""What the engine puts on the queue: item kinds, item specs and deterministic job ids.

A job id is derived from what the item *means* (run, step, purpose), never from when it was
made, so enqueueing the same continuation twice is a no-op and duplicated work collapses in the
queue.  Both backends (Postgres and Redis) use these functions, so their ids are identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ItemKind(Enum):
    EVENT = "event"
    START = "start"
    EDGE = "edge"
    SLEEP = "sleep"
    PAUSE_TIMEOUT = "pause-timeout"
    CANCEL = "cancel"
    CRON = "cron"
    DEBOUNCE = "debounce"
    BATCH = "schedule-batch"


#: Discovery: the call that asks the SDK to run the function from the top.
DISCOVERY_STEP = "step"


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemSpec:
    """An item to enqueue.  ``available_at`` and ``score`` are milliseconds since the epoch."""

    kind: ItemKind
    job_id: str
    available_at: int
    run_id: str | None = None
    function_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    max_attempts: int = 5
    #: Claim order among due items: lower first.  Defaults to ``available_at``.
    score: int | None = None
    #: Capacity buckets (key, limit) this item needs a free slot in to be leased.
    concurrency: tuple[tuple[str, int], ...] = ()

    @property
    def effective_score(self) -> int:
        return self.available_at if self.score is None else self.score


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedItem:
    """An item leased to one worker (the lease's end is kept by the database)."""

    id: int
    kind: ItemKind
    job_id: str
    run_id: str | None
    function_id: str | None
    attempt: int
    max_attempts: int
    lease_id: str
    payload: Mapping[str, Any]
    #: The concurrency buckets the item occupies while leased.
    concurrency_keys: tuple[str, ...] = ()
    #: The run's history version when the item was claimed (None: unknown or no history).
    run_version: int | None = None
    #: Deliveries of this item that ended without an outcome (expired leases, internal errors).
    failures: int = 0
    #: Why the last of them failed.
    last_error: str | None = None


def start_job_id(function_id: str, idempotency_key: str) -> str:
    return f"{function_id}:{idempotency_key}"


def step_job_id(run_id: str, purpose: str, step_id: str) -> str:
    """Job id of a continuation of ``run_id`` caused by ``step_id``.

    ``purpose`` names the continuation: ``next`` (discovery after a step), ``plan`` (a
    targeted call), ``sleep``, ``wait``, ``event`` / ``timeout`` (resume paths).
    """
    return f"{run_id}:{purpose}:{step_id}"


def event_job_id(internal_event_id: str) -> str:
    return f"event:{internal_event_id}"
