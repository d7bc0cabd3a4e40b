"""Effects: what must happen, in the same transaction, alongside a run's new history.

``decide`` returns effects as data; the store carries them out atomically with the history
append and the ack of the claimed item, so a crash can never leave one without the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.queue import ItemSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Enqueue:
    item: ItemSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryCall:
    """Put the claimed item back, due at ``available_at``, as attempt ``attempt``."""

    available_at: int
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePause:
    """Park a step until an event matches (waitForEvent, invoke), a signal is sent
    (waitForSignal) or it expires."""

    pause_id: str
    run_id: str
    step_id: str
    kind: str  # "wait" | "invoke" | "cancel" | "signal"
    event_name: str
    expression: str | None
    expires_at: int
    #: Only events received at or after this time (ms) may resume the pause.
    created_at: int
    #: The event that created the pause never resumes it (invoke: the invocation event).
    source_event_id: str | None = None
    #: Invoke pauses are found by correlation id instead of an expression.
    correlation_id: str | None = None
    #: Signal pauses are found by their signal, which at most one live pause holds.
    signal: str | None = None
    #: Take ``signal`` over from another run's pause instead of failing (``SignalConflict``).
    replace_signal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearPause:
    """A pause was resolved: drop it and its timeout item."""

    pause_id: str
    timeout_job_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishRun:
    """The run ended: drop its pauses and other queue items."""

    run_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitEvent:
    """Ingest an internal event (lifecycle, invocation) as if it had been sent to ``/e/``."""

    internal_id: str
    event: dict[str, Any]


Effect = Enqueue | RetryCall | CreatePause | ClearPause | FinishRun | EmitEvent


@dataclass(frozen=True, slots=True)
class Decision:
    events: list[Any]
    effects: list[Effect]

    @property
    def is_empty(self) -> bool:
        return not self.events and not self.effects
