"""CEL ``query`` filters of ``runs``/``eventsV2``: evaluated off the event loop, within a budget.

An expression is user input and cel-python interprets it in Python: one nested comprehension
over a large list can take seconds per row.  So ``CelFilter.verdicts`` hands batches of events
to a small process-wide thread pool (``CEL_THREADS``; a request uses one thread at a time), and
each request may spend ``CEL_SECONDS`` of evaluation in total; every evaluation gets what is
left of it (within the request's deadline) as its ``deadline``, on top of the expression
module's own per-evaluation cost budget.  Running out of either gives ``QueryBudgetExceeded``
(code ``QUERY_BUDGET_EXCEEDED``): an expression that costly would run out again on the next
page, and an event it could not judge is neither a match nor a non-match, so it is an error,
never a silently shorter or empty answer.  An ordinary evaluation error on one event (a type
mismatch, a missing field) is "no match", as before.  Verdicts are remembered per request, so a
``totalCount`` re-scanning the rows its page already judged costs no evaluation twice.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app import expressions
from app.graphql.errors import ClientError
from app.graphql.limits import CEL_SECONDS, CEL_THREADS

#: Seconds granted past the deadline for a batch to notice it and return.
_GRACE = 0.25


class QueryBudgetExceeded(ClientError):
    """The CEL ``query`` needed more evaluation than one request may use."""

    code = "QUERY_BUDGET_EXCEEDED"


@dataclass(frozen=True, slots=True)
class _Batch:
    verdicts: list[bool]
    seconds: float  # spent evaluating (not waiting for a thread)
    stopped: bool = False  # out of time, or abandoned, before the last event
    reason: str | None = None  # why one event alone was too costly


@functools.cache
def _executor() -> ThreadPoolExecutor:
    # Made on first use (nothing runs at import); its threads start lazily and live as long
    # as the process.
    return ThreadPoolExecutor(max_workers=CEL_THREADS, thread_name_prefix="graphql-cel")


def _evaluate(
    expr: expressions.CompiledExpression,
    events: Sequence[Mapping[str, Any] | None],
    seconds: float,
    request_deadline: float,
    abandoned: threading.Event,
) -> _Batch:
    """Runs in a worker thread: the verdicts reached within ``seconds`` of starting."""
    started = time.monotonic()
    # Counted from here, not from the hand-off: time queued behind other requests' batches is
    # not this request's evaluation.
    deadline = min(started + seconds, request_deadline)
    verdicts: list[bool] = []
    for event in events:
        if abandoned.is_set() or time.monotonic() >= deadline:
            return _Batch(verdicts, time.monotonic() - started, stopped=True)
        try:
            # The deadline stops a single costly evaluation too, not only the batch.
            verdict = expr.evaluate({"event": event or {}}, deadline=deadline)
        except expressions.ExpressionBudgetExceeded as exc:
            # Says nothing about the event: not a "no match", the filter cannot be answered.
            # Past the deadline, the request's time ran out; before it, this event cost too much.
            late = time.monotonic() >= deadline
            reason = None if late else exc.reason
            return _Batch(verdicts, time.monotonic() - started, stopped=True, reason=reason)
        except expressions.ExpressionError:
            verdict = False
        verdicts.append(verdict is True)
    return _Batch(verdicts, time.monotonic() - started)


class CelFilter:
    """One request's CEL evaluations: its budget, its thread hand-offs, its verdicts."""

    def __init__(self, *, deadline: float, seconds: float = CEL_SECONDS) -> None:
        self.deadline = deadline
        self.seconds_left = seconds
        self.evaluated = 0
        self._lock = asyncio.Lock()
        self._verdicts: dict[tuple[str, str], bool] = {}

    async def verdicts(
        self,
        expr: expressions.CompiledExpression,
        events: Sequence[tuple[str, Mapping[str, Any] | None]],
    ) -> list[bool]:
        """Whether each ``(event id, event)`` satisfies ``expr``, in order."""
        todo = [(key, event) for key, event in events if (expr.source, key) not in self._verdicts]
        if todo:
            # One thread at a time per request: a hostile request cannot take the pool.
            async with self._lock:
                found = await self._evaluate(expr, [event for _, event in todo])
            for (key, _), verdict in zip(todo, found, strict=True):
                self._verdicts[(expr.source, key)] = verdict
        return [self._verdicts[(expr.source, key)] for key, _ in events]

    async def _evaluate(
        self, expr: expressions.CompiledExpression, events: list[Mapping[str, Any] | None]
    ) -> list[bool]:
        if self.seconds_left <= 0:
            raise self._exceeded()
        # Set when nobody waits for the batch any more (the request timed out, failed or was
        # cancelled): the thread stops at the next event instead of finishing the batch.
        abandoned = threading.Event()
        job = _executor().submit(
            _evaluate, expr, events, self.seconds_left, self.deadline, abandoned
        )
        try:
            # Waiting for a free thread is bounded by the request's deadline only.
            async with asyncio.timeout(max(0.0, self.deadline - time.monotonic()) + _GRACE):
                batch = await asyncio.wrap_future(job)
        except TimeoutError:
            raise self._exceeded() from None
        finally:
            abandoned.set()
        self.seconds_left -= batch.seconds
        self.evaluated += len(batch.verdicts)
        if batch.stopped:
            raise self._exceeded(batch.reason)
        return batch.verdicts

    def _exceeded(self, reason: str | None = None) -> QueryBudgetExceeded:
        if reason is not None:  # one event alone was too costly
            why = f"evaluating it on one event went over its budget ({reason})"
        else:
            why = f"it needed more than this request's {CEL_SECONDS:g} s of evaluation"
        return QueryBudgetExceeded(
            f"the query expression was stopped: {why}, after judging {self.evaluated} events; "
            "simplify the expression or narrow the time window or the other filters"
        )
