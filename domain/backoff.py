"""When a failed attempt runs again, and whether it runs again at all.

This module owns Inngest's retry arithmetic: the default backoff table with its jitter, the
fixed interval the dev server offers for tests, the ``Retry-After`` header an SDK may send
(seconds or a date, clamped to between one second and one day), and the attempt-count rule.
Times are integer milliseconds since the epoch; the clock and the random source are arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain.durations import parse_date

#: Retries when a function or step does not say (so 5 attempts).
DEFAULT_RETRIES = 4
#: The most retries a function or step may ask for.
MAX_RETRIES = 20

_SECOND_MS = 1_000
_MINUTE_MS = 60 * _SECOND_MS
_HOUR_MS = 60 * _MINUTE_MS

#: Go ``backoff.BackoffTable``: delay after the failure of attempt ``i`` (0-based).
BACKOFF_TABLE_MS: tuple[int, ...] = (
    15 * _SECOND_MS,
    30 * _SECOND_MS,
    1 * _MINUTE_MS,
    2 * _MINUTE_MS,
    5 * _MINUTE_MS,
    10 * _MINUTE_MS,
    20 * _MINUTE_MS,
    40 * _MINUTE_MS,
    1 * _HOUR_MS,
    2 * _HOUR_MS,
)
#: Jitter is uniform in [0, JITTER_MS) milliseconds.
JITTER_MS = 30_000

MIN_RETRY_AFTER_MS = 1 * _SECOND_MS
MAX_RETRY_AFTER_MS = 24 * _HOUR_MS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Go reads a Retry-After this short as whole seconds: no date layout fits in 7 characters.
_MAX_SECONDS_LEN = 7


def retry_at(
    attempt: int,
    now_ms: int,
    rand: Callable[[], float],
    fixed_interval_ms: int | None = None,
) -> int:
    """When to re-run after attempt ``attempt`` (0-based) failed.

    ``rand`` returns a float in [0, 1).  ``fixed_interval_ms`` (``--retry-interval``) replaces
    the table and the jitter so that tests need not wait minutes.
    """
    if fixed_interval_ms is not None:
        return now_ms + fixed_interval_ms
    index = min(max(attempt, 0), len(BACKOFF_TABLE_MS) - 1)
    jitter = min(int(rand() * JITTER_MS), JITTER_MS - 1)
    return now_ms + BACKOFF_TABLE_MS[index] + jitter


def parse_retry_after(value: str, now_ms: int) -> int | None:
    """The retry time an SDK's ``Retry-After`` header asks for, or ``None`` if unparseable.

    Up to seven characters is a positive integer count of seconds (counted from ``now``
    truncated to the second, as Go does); anything else is a date.  The result is clamped to
    ``[now + 1 s, now + 24 h]``.
    """
    text = value.strip()
    at = _seconds_from_now(text, now_ms) if len(text) <= _MAX_SECONDS_LEN else None
    if at is None:
        date = parse_date(text) if text else None
        if date is None:
            return None
        # Integer division keeps whole milliseconds exact (no float rounding).
        at = (date - _EPOCH) // timedelta(milliseconds=1)
    return min(max(at, now_ms + MIN_RETRY_AFTER_MS), now_ms + MAX_RETRY_AFTER_MS)


def _seconds_from_now(text: str, now_ms: int) -> int | None:
    # Only plain ASCII digits (with an optional sign) count, like Go's strconv.Atoi.
    unsigned = text[1:] if text[:1] in ("+", "-") else text
    if not (unsigned.isascii() and unsigned.isdigit()):
        return None
    seconds = int(text)
    if seconds <= 0:
        return None
    return now_ms - now_ms % _SECOND_MS + seconds * _SECOND_MS


def should_retry(attempt: int, max_attempts: int, no_retry: bool) -> bool:
    """Whether attempt ``attempt`` (0-based) may be followed by another one."""
    return not no_retry and attempt + 1 < max_attempts
