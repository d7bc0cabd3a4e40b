"""The UI's pure parts: session tokens, the runs query string, formatting, the waterfall."""

from __future__ import annotations

from datetime import UTC, datetime

from app.store import read_queries as rq
from app.ui import session, timeline
from app.ui.filters import RunsQuery, decode_cursor, encode_cursor
from app.ui.render import duration, query
from domain import history as h
from projections.traces import fold_trace

KEY = "signkey-test-12345678"
RUN = "01HZZZZZZZZZZZZZZZZZZZZZZZ"


def test_a_session_token_is_valid_only_for_its_key_and_age() -> None:
    token = session.make_token(KEY, 1_000_000)
    assert session.token_valid(token, (KEY,), 1_000_010)
    assert session.token_valid(token, ("signkey-prod-abcd", KEY), 1_000_010)  # fallback key
    assert not session.token_valid(token, ("signkey-test-abcdef",), 1_000_010)
    assert not session.token_valid(token, (KEY,), 1_000_000 + session.MAX_AGE_S + 1)
    assert not session.token_valid(token, (KEY,), 1_000_000 - 3600)  # issued in the future
    assert not session.token_valid(token[:-1] + "0", (KEY,), 1_000_010)
    assert not session.token_valid("v1.x.y", (KEY,), 1_000_010)
    assert not session.token_valid(None, (KEY,), 1_000_010)


def test_the_runs_query_drops_what_it_cannot_use() -> None:
    q = RunsQuery.parse(
        {"range": "forever", "after": "garbage", "function": "f"}, ["Failed", "Bogus"]
    )
    assert q.statuses == ("Failed",) and q.range == "7d" and q.after == ""
    assert len(q.problems) == 2
    now = datetime(2026, 1, 1, tzinfo=UTC)
    filt = q.to_filter(now)
    assert filt.function_ids == ("f",) and filt.statuses == ("Failed",)
    assert (now - filt.since).days == 7


def test_a_cursor_round_trips() -> None:
    pos = rq.RunPosition(at=datetime(2026, 1, 1, 12, tzinfo=UTC), run_id=RUN)
    assert decode_cursor(encode_cursor(pos)) == pos
    assert decode_cursor("bm90LWEtY3Vyc29y") is None


def test_formatting() -> None:
    assert [duration(x) for x in (None, 5, 1250, 65_000, 7_380_000, 90_000_000)] == [
        "—", "5ms", "1.25s", "1m 05s", "2h 03m", "1d 1h",
    ]  # fmt: skip
    assert query("/runs", {"status": ["A", "B"], "app": "", "x": None}) == "/runs?status=A&status=B"


def test_the_waterfall_places_steps_in_the_run() -> None:
    history: list[h.HistoryEvent] = [
        h.RunScheduled(at=1000, run_id=RUN, function_id="f", function_slug="f",
                       function_version=1, app_id="a", events=({"name": "e"},),
                       event_ids=("E",), idempotency_key="k", max_attempts=1),
        h.RunStarted(at=1000),
        h.StepCompleted(at=1500, step_id="s1", name="one", output={"data": 1}, attempt=0,
                        started_at=1000),
        h.StepFailed(at=2000, step_id="s2", name="two", attempt=0, started_at=1500,
                     error={"name": "Boom", "message": "bad", "stack": "trace"}),
        h.RunFailed(at=2000, error={"name": "Boom", "message": "bad"}),
    ]  # fmt: skip
    root = timeline.build(fold_trace(history), now=5000)
    one, two = root.children[:2]
    assert (one.name, one.left, one.run_width, one.duration_ms) == ("one", 0, 50, 500)
    assert one.output is not None and one.output.data == 1
    assert two.left == 50 and two.status == "Failed"
    assert two.output is not None and two.output.error is not None
    assert (two.output.error.name, two.output.error.message) == ("Boom", "bad")
