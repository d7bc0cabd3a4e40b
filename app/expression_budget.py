"""The cost budget of one expression evaluation: this module owns the unit of work, the default
limit and the wall-clock deadline check, like cel-go's ``cel.CostLimit`` and
``InterruptCheckFrequency``.  One unit is one step of the evaluator: a syntax node visited, a
comprehension iteration, a list element or map entry converted from the caller's data, compared or
searched, or ``STRING_CHARS_PER_UNIT`` characters of text copied, compared or scanned; a function
or method call costs ``CALL_COST``.  Counting steps, not time, makes the verdict deterministic: an
expression over an event fits or not, on any machine and under any load.  The optional deadline
(a ``time.monotonic()`` value) is a backstop, read every ``DEADLINE_CHECK_UNITS`` units.

``DEFAULT_MAX_COST`` is 50,000 units.  A unit takes about a microsecond of CPU (0.7-3 us measured
across loop bodies from ``x == -1`` to regular expressions and int arithmetic), so a runaway
evaluation stops after 40-60 ms, 150 ms at the very worst: ``exists`` over a 50,000-element list
(a ~400 KB event) fails a fifth of the way through, a nested ``exists`` over it within the first
two rows.  Realistic expressions cost 5-50 units; even ``exists``/``filter``/``map`` over every
element of a few-KB event (about a hundred elements, ten-odd units each) stays under 5,000, a
tenth of the budget; and a flat expression at the length limit evaluates within it too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = [
    "CALL_COST", "DEADLINE_CHECK_UNITS", "DEFAULT_MAX_COST", "STRING_CHARS_PER_UNIT", "Budget",
    "BudgetExhausted", "charge", "charge_text", "metered",
]  # fmt: skip

DEFAULT_MAX_COST = 50_000
# Copying or scanning text runs in C, about a hundred times faster per character than the
# evaluator visits a node; cel-go's StringTraversalCostFactor (0.1) prices Go, not Python.
STRING_CHARS_PER_UNIT = 100
DEADLINE_CHECK_UNITS = 1_000
# A function or method call runs cel-python's call path and then the function itself (parsing
# a timestamp, compiling a regular expression): 10-20 us, where a node visit takes about one.
CALL_COST = 10


class BudgetExhausted(Exception):
    """Internal signal: the running evaluation is over its cost or past its deadline.

    Deliberately not a ValueError, TypeError or LookupError: cel-python turns those into CEL
    error values, which ``||``, ``exists`` and friends may swallow, and the evaluation must stop.
    """


class Budget:
    """What one evaluation may still spend; ``max_cost=None`` counts without a limit."""

    __slots__ = ("_deadline", "_left", "_max_cost", "_until_check")

    def __init__(self, max_cost: int | None, deadline: float | None = None) -> None:
        if max_cost is not None and (isinstance(max_cost, bool) or max_cost < 1):
            raise ValueError(f"max_cost must be a positive integer or None, not {max_cost!r}")
        self._max_cost = max_cost
        self._left = sys.maxsize if max_cost is None else max_cost
        self._deadline = deadline
        self._until_check = 0  # check the deadline on the first charge

    def charge(self, units: int) -> None:
        """Spend ``units``; raise BudgetExhausted when over the limit or past the deadline."""
        self._left -= units
        if self._left < 0:
            raise BudgetExhausted(f"evaluation exceeded its cost budget of {self._max_cost} units")
        self._until_check -= units
        if self._until_check <= 0:
            self._until_check = DEADLINE_CHECK_UNITS
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise BudgetExhausted("evaluation ran past its deadline")

    @property
    def spent(self) -> int:
        full = sys.maxsize if self._max_cost is None else self._max_cost
        return full - self._left


def text_units(text: str | bytes) -> int:
    return len(text) // STRING_CHARS_PER_UNIT


# The evaluation running in this thread (or task); operator and function implementations are
# called by cel-python with fixed signatures, so they find their budget here.
_current: ContextVar[Budget | None] = ContextVar("expression_budget", default=None)


def charge(units: int) -> None:
    """Charge the running evaluation, if any (pause helpers evaluate literals unmetered)."""
    budget = _current.get()
    if budget is not None:
        budget.charge(units)


def charge_text(*texts: object) -> None:
    """Charge for scanning the given strings or bytes; other values cost nothing here."""
    units = sum(text_units(t) for t in texts if isinstance(t, str | bytes))
    if units:
        charge(units)


@contextmanager
def metered(budget: Budget) -> Iterator[Budget]:
    """Make ``budget`` the running evaluation's budget for the duration of a ``with`` block."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
