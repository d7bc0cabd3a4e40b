"""Flow-control maths, pure: GCRA for throttle and rate limits, keys, priority, jitter.

Throttle delays run starts and rate limits drop runs, both with a generic cell rate
algorithm over one "theoretical arrival time" (TAT) per key (semantics §3.2-3.3):

* throttle — emission ``period/limit``, tolerance ``emission * (limit + burst)``: from idle
  ``limit + burst`` runs start at once, then one every ``period/limit``.  Stepwell reserves the
  slot when the run is scheduled (the start item becomes due at its slot), which gives the same
  start times as checking at lease time, with one row lock instead of a re-check per claim.
* rate limit — burst ``floor(limit/10)``, tolerance ``emission * (burst + 1)``: over-limit
  runs are dropped.

Key strings keep each function's state apart; hashing bounds their length and never depends on
Python's per-process hash seed, so every process (and the Redis backend) derives the same keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

PRIORITY_LIMIT_S = 43_200  # ±12 h, as upstream clamps priority.run
CONCURRENCY_SCOPES = {"fn": "f", "env": "e", "account": "a"}


def short_hash(value: Any) -> str:
    """A stable 16-hex-digit digest of a key value (strings as text, others as ``%v``)."""
    text = value if isinstance(value, str) else format_value(value)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def format_value(value: Any) -> str:
    """Go's ``%v`` for the JSON values an expression can produce."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class Throttled:
    """A throttle reservation: the run may start at ``start_at``; the key's TAT becomes ``tat``."""

    start_at: int
    tat: int


def throttle_reserve(
    tat: int | None, now: int, *, limit: int, burst: int, period_ms: int
) -> Throttled:
    limit = max(limit, 1)
    emission = period_ms / limit
    tolerance = emission * (limit + max(burst, 0))
    new_tat = max(tat or now, now) + emission
    return Throttled(start_at=max(now, int(new_tat - tolerance)), tat=int(new_tat))


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    tat: int | None  # the key's new TAT when allowed


def rate_limit_check(tat: int | None, now: int, *, limit: int, period_ms: int) -> RateDecision:
    if limit <= 0:
        return RateDecision(False, None)
    emission = period_ms / limit
    tolerance = emission * (limit // 10 + 1)
    current = max(tat or now, now)
    capacity = int((tolerance - (current - now)) // emission)
    if capacity <= 0:
        return RateDecision(False, None)
    return RateDecision(True, int(current + emission))


def clamp_priority(value: Any) -> int:
    """``priority.run`` must evaluate to an integer number of seconds; anything else is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not value.is_integer():
        return 0
    return max(-PRIORITY_LIMIT_S, min(PRIORITY_LIMIT_S, int(value)))


def concurrency_key(scope: str, scope_id: str, expression: str | None, value: Any) -> str:
    """The capacity bucket of a concurrency limit: ``<scope>:<scope id>[:<expr>:<value>]``."""
    prefix = f"{CONCURRENCY_SCOPES.get(scope, 'f')}:{scope_id}"
    if expression is None:
        return prefix
    return f"{prefix}:{short_hash(expression)}:{short_hash(value)}"


def cron_jitter_ms(job_id: str, jitter_ms: int) -> int:
    """Deterministic jitter in ``[1 s, jitter)`` for a cron tick (0 when jitter is off)."""
    if jitter_ms <= 1000:
        return 0
    digest = int(hashlib.sha1(job_id.encode()).hexdigest()[:15], 16)
    return 1000 + digest % (jitter_ms - 1000)
