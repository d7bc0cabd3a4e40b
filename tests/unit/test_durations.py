"""Duration strings (Go units plus ``d``/``w``) and the sleep/timeout "date or duration" rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.durations import (
    MAX_HORIZON,
    InvalidDuration,
    beyond_horizon,
    format_duration,
    parse_date,
    parse_duration,
    parse_time_or_duration,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300ms", timedelta(milliseconds=300)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2h45m", timedelta(hours=2, minutes=45)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (".5s", timedelta(milliseconds=500)),
        ("5.s", timedelta(seconds=5)),
        ("-1s", timedelta(seconds=-1)),
        ("+5m", timedelta(minutes=5)),
        ("0", timedelta(0)),
        ("-0", timedelta(0)),
        (
            "1w2d3h4m5s6ms7us",
            timedelta(
                weeks=1, days=2, hours=3, minutes=4, seconds=5, milliseconds=6, microseconds=7
            ),
        ),
        ("1\u00b5s", timedelta(microseconds=1)),
        ("1\u03bcs", timedelta(microseconds=1)),
        ("1500ns", timedelta(microseconds=1)),
        ("30s", timedelta(seconds=30)),
        ("1d12h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_parse_duration_accepts_go_units_plus_days_and_weeks(
    text: str, expected: timedelta
) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "-", "1", "s", "1x", "1h-2m", "1.5.3s", ".s", "1 h", "1H", "10000000000000h"]
)
def test_parse_duration_rejects_malformed_strings_with_invalid_duration(text: str) -> None:
    with pytest.raises(InvalidDuration):
        parse_duration(text)


def test_invalid_duration_is_a_value_error_naming_the_input() -> None:
    with pytest.raises(ValueError, match="'1x'"):
        parse_duration("1x")


def test_parse_duration_rejects_more_than_go_int64_nanoseconds() -> None:
    assert parse_duration("2562047h") == timedelta(hours=2562047)
    with pytest.raises(InvalidDuration, match="out of range"):
        parse_duration("2562048h")


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=9, hours=2, seconds=5), "1w2d2h5s"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(microseconds=7), "7us"),
        (timedelta(seconds=-90), "-1m30s"),
    ],
)
def test_format_duration_drops_zero_units(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected


@pytest.mark.parametrize(
    "td",
    [timedelta(days=400, microseconds=3), timedelta(minutes=-7), timedelta(seconds=59.25)],
)
def test_format_duration_round_trips_through_parse_duration(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-04-01T00:00:00Z", datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-04-01T00:00:00.000Z", datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-04-01T00:00:00.123456789Z", datetime(2026, 4, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2026-04-01T02:00:00+02:00", datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-04-01T00:00:00", datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-04-01", datetime(2026, 4, 1, tzinfo=UTC)),
        ("Wed, 01 Apr 2026 00:00:00 GMT", datetime(2026, 4, 1, tzinfo=UTC)),
    ],
)
def test_parse_date_reads_rfc3339_iso_and_http_dates_as_utc(text: str, expected: datetime) -> None:
    parsed = parse_date(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "1h30m", "2026-13-01T00:00:00Z", "tomorrow", "2026-W01-1"])
def test_parse_date_returns_none_for_non_dates(text: str) -> None:
    assert parse_date(text) is None


def test_empty_sleep_or_timeout_means_now() -> None:
    assert parse_time_or_duration("", NOW) == NOW


def test_duration_is_added_to_now() -> None:
    assert parse_time_or_duration("1h30m", NOW) == NOW + timedelta(hours=1, minutes=30)


def test_long_duration_string_that_is_not_a_date_is_still_a_duration() -> None:
    text = "1h30m15s500ms"
    assert len(text) >= 10
    assert parse_time_or_duration(text, NOW) == NOW + timedelta(
        hours=1, minutes=30, seconds=15, milliseconds=500
    )


def test_future_date_is_absolute() -> None:
    assert parse_time_or_duration("2026-03-02T00:00:00.000Z", NOW) == datetime(
        2026, 3, 2, tzinfo=UTC
    )


def test_date_with_offset_is_converted_to_the_same_instant() -> None:
    at = parse_time_or_duration("2026-03-01T14:00:00+01:00", NOW)
    assert at == NOW + timedelta(hours=1)


def test_past_date_means_now() -> None:
    assert parse_time_or_duration("2020-01-01T00:00:00Z", NOW) == NOW


def test_negative_duration_means_now() -> None:
    assert parse_time_or_duration("-1s", NOW) == NOW


def test_garbage_raises_invalid_duration() -> None:
    with pytest.raises(InvalidDuration):
        parse_time_or_duration("soon please", NOW)


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_time_or_duration("1s", datetime(2026, 1, 1))


def test_now_in_another_zone_is_compared_as_an_instant() -> None:
    east = NOW.astimezone(timezone(timedelta(hours=5)))
    assert parse_time_or_duration("2026-03-01T12:00:01Z", east) == NOW + timedelta(seconds=1)


def test_horizon_is_366_days() -> None:
    assert timedelta(days=366) == MAX_HORIZON
    assert not beyond_horizon(NOW + MAX_HORIZON, NOW)
    assert beyond_horizon(NOW + MAX_HORIZON + timedelta(seconds=1), NOW)
