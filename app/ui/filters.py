"""The runs list's query string: filters, time range and the page cursor, parsed and rebuilt.

``RunsQuery.parse`` never fails: an unknown status, range or malformed cursor is dropped (and
reported in ``problems``) so a hand-edited URL still shows a page.  The cursor is the keyset
position of the last row shown, ``base64url("<queued_at ISO>|<run id>")``, always for the one
order the UI lists in (newest queued first), so pages stay stable while runs keep arriving.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.store import read_queries as rq
from domain.ids import is_ulid
from domain.run import RunStatus

STATUSES = tuple(s.value for s in RunStatus)
RANGES: dict[str, timedelta | None] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "3d": timedelta(days=3),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
    "custom": None,
}
DEFAULT_RANGE = "7d"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(position: rq.RunPosition) -> str:
    raw = f"{position.at.isoformat()}|{position.run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> rq.RunPosition | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, run_id = raw.split("|")
        position = rq.RunPosition(at=datetime.fromisoformat(at), run_id=run_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return position if position.at.tzinfo is not None and is_ulid(run_id) else None


def _local_input(text: str) -> datetime | None:
    """A ``datetime-local`` field's value, read as UTC (the form says so)."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        return None
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found


@dataclass(frozen=True, slots=True, kw_only=True)
class RunsQuery:
    statuses: tuple[str, ...] = ()
    function_id: str = ""
    app_id: str = ""
    range: str = DEFAULT_RANGE
    since: str = ""
    until: str = ""
    after: str = ""
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, params: Mapping[str, Any], getall: Sequence[str]) -> RunsQuery:
        """From query parameters (``getall``: every value given for ``status``)."""
        problems: list[str] = []
        statuses = tuple(s for s in STATUSES if s in set(getall))
        chosen = str(params.get("range") or DEFAULT_RANGE)
        if chosen not in RANGES:
            problems.append(f"unknown time range {chosen!r}")
            chosen = DEFAULT_RANGE
        after = str(params.get("after") or "")
        if after and decode_cursor(after) is None:
            problems.append("the page cursor is not valid; showing the newest runs")
            after = ""
        return cls(
            statuses=statuses, function_id=str(params.get("function") or ""),
            app_id=str(params.get("app") or ""), range=chosen,
            since=str(params.get("since") or ""), until=str(params.get("until") or ""),
            after=after, problems=tuple(problems),
        )  # fmt: skip

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """``[since, until)`` of queued times this query covers."""
        # A run queued in this very millisecond must not fall outside "until now".
        until = now + timedelta(seconds=1)
        if self.range == "custom":
            since = _local_input(self.since) or EPOCH
            return since, _local_input(self.until) or until
        span = RANGES[self.range]
        return (EPOCH if span is None else now - span), until

    def to_filter(self, now: datetime) -> rq.RunsFilter:
        since, until = self.window(now)
        return rq.RunsFilter(
            since=since, until=until, statuses=self.statuses,
            function_ids=(self.function_id,) if self.function_id else (),
            app_ids=(self.app_id,) if self.app_id else (),
        )  # fmt: skip

    @property
    def position(self) -> rq.RunPosition | None:
        return decode_cursor(self.after) if self.after else None

    def params(self, **changes: Any) -> dict[str, Any]:
        """The query string's parameters, with ``changes`` applied (for links)."""
        values: dict[str, Any] = {
            "status": list(self.statuses), "function": self.function_id, "app": self.app_id,
            "range": "" if self.range == DEFAULT_RANGE else self.range,
            "since": self.since if self.range == "custom" else "",
            "until": self.until if self.range == "custom" else "", "after": self.after,
        }  # fmt: skip
        values.update(changes)
        return values
