"""Expression evaluation for the engine that never stalls a worker's event loop.

Trigger expressions and waitForEvent/cancelOn conditions are evaluated against events that
outside callers send, up to 3 MiB each.  Almost every evaluation is cheap, so it first runs
inline under a small cost budget (no thread hand-off on the hot path).  One that exceeds it is
evaluated again on the process's one expression thread, under the full cost budget and a
wall-clock deadline, while the loop goes on serving leases, SDK calls and requests; one heavy
evaluation at a time, so a burst of hostile events cannot take every core from the loop.  An
evaluation that exceeds even the full budget is a failed match, logged with the event and the
expression (as an expression that fails to evaluate is, upstream), never a frozen worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app import expressions

log = logging.getLogger(__name__)

#: Cost an evaluation may spend inline, on the event loop: about a millisecond of work.
INLINE_MAX_COST = 2_000
#: Wall-clock bound of one evaluation on the expression thread (the cost budget normally ends
#: it much sooner; this guards against a slow machine).
THREAD_DEADLINE_SECONDS = 2.0

_executor: ThreadPoolExecutor | None = None


def _thread() -> ThreadPoolExecutor:
    global _executor  # noqa: PLW0603 - one lazily created thread per process
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepwell-cel")
    return _executor


async def holds(source: str, variables: Mapping[str, Any], *, context: str) -> bool:
    """Whether ``source`` evaluates to true; ``context`` names the event and what is being
    matched, for the log line of an evaluation over budget."""
    try:
        return expressions.evaluate_bool(source, variables, max_cost=INLINE_MAX_COST)
    except expressions.ExpressionBudgetExceeded:
        pass
    deadline = time.monotonic() + THREAD_DEADLINE_SECONDS
    evaluate = functools.partial(expressions.evaluate_bool, source, variables, deadline=deadline)
    try:
        return await asyncio.get_running_loop().run_in_executor(_thread(), evaluate)
    except expressions.ExpressionBudgetExceeded as exc:
        log.warning("%s: %s; treated as not matching", context, exc)
        return False
