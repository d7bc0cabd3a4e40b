"""Duration and time strings as the Inngest protocol writes them.

This module owns the parsing of Go-style duration strings extended with days and weeks (the
``str2duration`` dialect used for ``sleep``, ``waitForEvent`` timeouts, debounce/throttle periods
and cron jitter), their formatting back into that dialect, the date formats the protocol accepts
in the same fields (RFC 3339 / ISO 8601, HTTP-dates), and the "date or duration" rule that turns a
sleep or timeout string into an absolute instant.  It is pure: the clock is always an argument.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta

#: The furthest a sleep or wait may reach into the future (Go ``MaxSleepDuration``).
MAX_HORIZON = timedelta(days=366)

_NS_PER_US = 1_000
_NS_PER_S = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS_PER_S

# Both micro signs are accepted because Go's parser takes U+00B5 and U+03BC alike.
_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": _NS_PER_US,
    "\u00b5s": _NS_PER_US,
    "\u03bcs": _NS_PER_US,
    "ms": 1_000_000,
    "s": _NS_PER_S,
    "m": 60 * _NS_PER_S,
    "h": 3_600 * _NS_PER_S,
    "d": _NS_PER_DAY,
    "w": 7 * _NS_PER_DAY,
}

# Largest to smallest, for formatting; the aliases of "us" are left out on purpose.
_FORMAT_UNITS: tuple[tuple[str, int], ...] = (
    ("w", _UNIT_NS["w"]),
    ("d", _UNIT_NS["d"]),
    ("h", _UNIT_NS["h"]),
    ("m", _UNIT_NS["m"]),
    ("s", _UNIT_NS["s"]),
    ("ms", _UNIT_NS["ms"]),
    ("us", _UNIT_NS["us"]),
)

# Go stores durations as int64 nanoseconds; accepting more would let us schedule what Go rejects.
_GO_MAX_NS = 2**63 - 1

# One term: digits, an optional fraction, then a unit (anything up to the next digit or dot).
_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")

# A gate so that only date-shaped strings reach ``fromisoformat`` (which is looser than RFC 3339).
_ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?"
)

# Go's Sleep heuristic: anything shorter cannot be a date, so it is never tried as one.
_MIN_DATE_LEN = 10


class InvalidDuration(ValueError):
    """A string that is neither a valid duration nor (where allowed) a date."""


def parse_duration(s: str) -> timedelta:
    """Parse ``300ms``, ``1h30m``, ``1.5h``, ``2d``, ``1w``, ``-1s`` into a ``timedelta``.

    Sub-microsecond precision is truncated (``timedelta`` cannot hold nanoseconds).
    """
    text = s.strip()
    negative = text[:1] == "-"
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return timedelta(0)
    if not body:
        raise InvalidDuration(f"invalid duration {s!r}: empty")
    ns = _sum_terms(body, s)
    return _ns_to_timedelta(-ns if negative else ns)


def _sum_terms(body: str, original: str) -> int:
    total = 0
    pos = 0
    while pos < len(body):
        match = _TERM.match(body, pos)
        if match is None or match.end() == pos:
            raise InvalidDuration(f"invalid duration {original!r}")
        total += _term_ns(match, original)
        if total > _GO_MAX_NS:
            raise InvalidDuration(f"invalid duration {original!r}: out of range")
        pos = match.end()
    return total


def _term_ns(match: re.Match[str], original: str) -> int:
    whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
    if not whole and not fraction:
        raise InvalidDuration(f"invalid duration {original!r}: a number is required")
    if not unit:
        raise InvalidDuration(f"missing unit in duration {original!r}")
    scale = _UNIT_NS.get(unit)
    if scale is None:
        raise InvalidDuration(f"unknown unit {unit!r} in duration {original!r}")
    # Integer maths keeps fractions exact where Go's float64 could be off by a nanosecond.
    frac_ns = int(fraction) * scale // 10 ** len(fraction) if fraction else 0
    return int(whole or "0") * scale + frac_ns


def _ns_to_timedelta(ns: int) -> timedelta:
    micros = abs(ns) // _NS_PER_US
    return timedelta(microseconds=-micros if ns < 0 else micros)


def format_duration(td: timedelta) -> str:
    """Render ``td`` as ``1w2d3h4m5s6ms7us``, dropping zero units; zero is ``0s``."""
    micros = (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
    if micros == 0:
        return "0s"
    remaining = abs(micros) * _NS_PER_US
    parts: list[str] = []
    for suffix, scale in _FORMAT_UNITS:
        count, remaining = divmod(remaining, scale)
        if count:
            parts.append(f"{count}{suffix}")
    return ("-" if micros < 0 else "") + "".join(parts)


def parse_date(s: str) -> datetime | None:
    """Parse an RFC 3339 / ISO 8601 date or an HTTP-date into an aware UTC datetime.

    Returns ``None`` when ``s`` is not a date.  A date without an offset is taken as UTC, as
    Go's layouts without a zone do.
    """
    text = s.strip()
    parsed = _parse_iso(text) if _ISO_DATE.fullmatch(text) else _parse_http_date(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace(",", ".").replace("z", "Z"))
    except ValueError:
        return None


def _parse_http_date(text: str) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def parse_time_or_duration(s: str, now: datetime) -> datetime:
    """The instant a sleep or ``waitForEvent`` timeout string points at.

    Empty ⇒ ``now`` (the TS SDK sends ``""`` for negative timeouts).  A string of at least ten
    characters that parses as a date is absolute; anything else is a duration from ``now``.
    Instants in the past collapse to ``now``: they mean "already due", not an error.
    ``now`` must be timezone-aware.  Raises ``InvalidDuration`` for anything else.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not s:
        return now
    if len(s) >= _MIN_DATE_LEN:
        at = parse_date(s)
        if at is not None:
            return max(at, now)
    try:
        delta = parse_duration(s)
    except InvalidDuration:
        raise InvalidDuration(f"invalid duration or date {s!r}") from None
    return max(now + delta, now)


def beyond_horizon(at: datetime, now: datetime) -> bool:
    """Whether ``at`` lies further than ``MAX_HORIZON`` after ``now`` (such steps fail)."""
    return at - now > MAX_HORIZON


def deadline_ms(now_ms: int, spec: object, default: timedelta | None = None) -> int | None:
    """Absolute ms for an option that is a duration or a date (``timeout``, sleeps).

    An empty spec means ``default`` from now (or now itself when there is no default); a
    target beyond ``MAX_HORIZON`` gives None unless a default exists.
    """
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    if spec in (None, "") and default is not None:
        target = now + default
    else:
        target = parse_time_or_duration(str(spec or ""), now)
    if target - now > MAX_HORIZON and default is None:
        return None
    return int(target.timestamp() * 1000)
