"""Run history events: every change of a run's state is exactly one of these.

Names are past tense and persisted by name, so a type is never renamed or reused; a change of
shape bumps its ``SCHEMA_VERSION`` and gets an upcaster in ``domain.codec``.  Payload values
are plain JSON-able data (dicts, lists, strings, numbers) so that the codec is a mechanical
mapping.  Times are integer milliseconds since the epoch.

Memo values (what the SDK receives in ``steps``) are stored exactly as they will be sent:
``{"data": X}`` for a step result, ``{"error": {...}}`` for a failed step, the raw event for a
matched wait, ``{"data": {"signal": S, "data": D}}`` for a received signal, ``None`` for a
finished sleep or a timed-out wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

JSON = Any


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEvent:
    """Base of all run transitions; ``at`` is when the transition was decided (ms)."""

    SCHEMA_VERSION: ClassVar[int] = 1
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunScheduled(HistoryEvent):
    """A run was created for a function and its trigger event(s)."""

    run_id: str
    function_id: str
    function_slug: str
    function_version: int
    app_id: str
    events: tuple[JSON, ...]
    event_ids: tuple[str, ...]
    idempotency_key: str
    max_attempts: int
    batch_id: str | None = None
    cron: str | None = None
    priority: int = 0
    original_run_id: str | None = None
    #: Memos carried over by a rerun from a step (``rerun(fromStep)``).
    steps: dict[str, JSON] = field(default_factory=dict)
    #: Concurrency buckets (key, limit) every step item of the run is counted in.
    concurrency: tuple[tuple[str, int], ...] = ()
    start_timeout_ms: int | None = None
    finish_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(HistoryEvent):
    """The first call to the SDK began (``at`` is the call's start time)."""

    #: The SDK's ``X-Inngest-Req-Version`` (-1 when it sent none).
    request_version: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class SdkVersionReported(HistoryEvent):
    """The SDK told us its request version (``X-Inngest-Req-Version``) for this run."""

    request_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StepCompleted(HistoryEvent):
    """A step returned; ``output`` is the memo as stored (``{"data": X}`` for StepRun)."""

    step_id: str
    name: str
    output: JSON
    attempt: int
    started_at: int
    op: str = "StepRun"
    #: Bytes of ``output`` as JSON; the run's state size is the sum (limit 32 MiB).
    size: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StepErrored(HistoryEvent):
    """An attempt of a call failed and will be retried at ``retry_at``.

    ``step_id`` is the call's target: a hashed step id, or ``"step"`` for a discovery call
    whose function body raised.
    """

    SCHEMA_VERSION: ClassVar[int] = 2

    step_id: str
    name: str
    attempt: int
    error: JSON
    retry_at: int
    started_at: int
    #: The op that failed (e.g. ``StepError``, ``AIGateway``); "" for a failed call (v1 rows).
    op: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFailed(HistoryEvent):
    """A step failed for good; the SDK will see ``{"error": error}`` as its memo."""

    SCHEMA_VERSION: ClassVar[int] = 2

    step_id: str
    name: str
    attempt: int
    error: JSON
    started_at: int
    #: The op that failed (e.g. ``StepFailed``, ``Gateway``); "" in v1 rows.
    op: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepsPlanned(HistoryEvent):
    """The SDK reported several steps at once (fan-out): they run as separate calls."""

    steps: tuple[tuple[str, str], ...]  # (step id, name)
    parallel_mode: str = "wait"


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryScheduled(HistoryEvent):
    """All parallel steps joined (or one finished, in race mode): the SDK is called again.

    Recorded only when it changes state (it ends a fan-out's force-step-plan mode); a plain
    sequential discovery is implied by the step result that precedes it.
    """

    clears_force_step_plan: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SleepStarted(HistoryEvent):
    step_id: str
    name: str
    until: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SleepCompleted(HistoryEvent):
    step_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitStarted(HistoryEvent):
    """The run waits for an event; ``expression`` has the trigger's values inlined."""

    step_id: str
    name: str
    event_name: str
    expression: str | None
    expires_at: int
    pause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitMatched(HistoryEvent):
    step_id: str
    event: JSON
    event_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitTimedOut(HistoryEvent):
    step_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalWaitStarted(HistoryEvent):
    """The run waits for ``signal`` (sent with ``POST /v1/signals``) until ``expires_at``.

    ``on_conflict`` is the SDK's choice when another run already waits on the signal:
    ``"replace"`` took the signal over (the other wait then only times out), anything else
    fails this run instead (and no ``SignalWaitStarted`` is recorded).  A wait that times out
    ends with ``WaitTimedOut``, as a wait for an event does.
    """

    step_id: str
    name: str
    signal: str
    expires_at: int
    pause_id: str
    on_conflict: str = "fail"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalReceived(HistoryEvent):
    """The signal a step waited on was sent; ``data`` is what the sender attached."""

    step_id: str
    signal: str
    data: JSON

    @property
    def memo(self) -> JSON:
        """The step's value as the SDK receives it (Inngest's ``SignalStepReturn``)."""
        return {"data": {"signal": self.signal, "data": self.data}}


@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeStarted(HistoryEvent):
    step_id: str
    name: str
    function_slug: str
    correlation_id: str
    invoke_event_id: str
    expires_at: int
    pause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeCompleted(HistoryEvent):
    """The invoked run finished or the invoke timed out; ``output`` is the memo."""

    step_id: str
    output: JSON
    timed_out: bool = False
    child_run_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeferAdded(HistoryEvent):
    """``defer()`` asked for a run of ``fn_slug`` with ``input`` once this run has ended.

    ``step_id`` is the SDK's hashed defer id.  ``status`` is ``AfterRun`` (scheduled when
    the run ends) or ``Rejected`` (kept so the SDK stops re-reporting it; never scheduled).
    """

    step_id: str
    name: str
    fn_slug: str
    input: JSON = None
    meta: JSON = None
    status: str = "AfterRun"
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeferAborted(HistoryEvent):
    """The SDK aborted a defer before the run ended: no run of it will ever exist."""

    step_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataAdded(HistoryEvent):
    """One metadata update (``domain.metadata``) for the run, a step or an attempt of it.

    ``scope`` is where it goes: ``run`` (the run's span), ``step``/``step_attempt``/``request``
    (the step ``step_id``, or its attempt ``attempt`` when that attempt failed and was retried)
    or ``extended_trace`` (the span ``span_id``).  ``source`` is ``op`` when it rode on the op
    of ``step_id`` (recorded in the same transition as that op) or ``api``.  ``size`` counts
    towards the run's metadata limit.
    """

    scope: str
    kind: str
    op: str
    values: JSON
    size: int
    source: str
    step_id: str | None = None
    attempt: int | None = None
    span_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRejected(HistoryEvent):
    """An op carried a metadata update the server refused (``reason``); the run goes on.

    Kept so that a dropped update shows in the run's history instead of vanishing.
    """

    step_id: str
    kind: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCompleted(HistoryEvent):
    output: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFailed(HistoryEvent):
    """The run failed; ``error`` is the SDK's error object verbatim (``domain.sdk_errors``)."""

    error: JSON
    #: The transport's view of the last attempt (``invalid status code: 500``), if there was one.
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCancelled(HistoryEvent):
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSkipped(HistoryEvent):
    reason: str


#: Every history type by its persisted name.  Never rename or reuse a key.
HISTORY_TYPES: dict[str, type[HistoryEvent]] = {
    cls.__name__: cls
    for cls in (
        RunScheduled,
        RunStarted,
        SdkVersionReported,
        StepCompleted,
        StepErrored,
        StepFailed,
        StepsPlanned,
        DiscoveryScheduled,
        SleepStarted,
        SleepCompleted,
        WaitStarted,
        WaitMatched,
        WaitTimedOut,
        SignalWaitStarted,
        SignalReceived,
        InvokeStarted,
        InvokeCompleted,
        DeferAdded,
        DeferAborted,
        MetadataAdded,
        MetadataRejected,
        RunCompleted,
        RunFailed,
        RunCancelled,
        RunSkipped,
    )
}

FINAL_TYPES = (RunCompleted, RunFailed, RunCancelled, RunSkipped)
