"""Retry timing: the default backoff table with jitter, the fixed test interval, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.backoff import (
    BACKOFF_TABLE_MS,
    DEFAULT_RETRIES,
    JITTER_MS,
    MAX_RETRIES,
    parse_retry_after,
    retry_at,
    should_retry,
)

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
# 2026-01-01T00:00:00.250Z: a quarter second past a whole second, to expose truncation.
NOW_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * SECOND + 250


def no_jitter() -> float:
    return 0.0


def max_jitter() -> float:
    return 0.999999999


def test_backoff_table_is_inngests_default() -> None:
    assert BACKOFF_TABLE_MS == (
        15 * SECOND,
        30 * SECOND,
        1 * MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        20 * MINUTE,
        40 * MINUTE,
        1 * HOUR,
        2 * HOUR,
    )


@pytest.mark.parametrize(("attempt", "delay"), list(enumerate(BACKOFF_TABLE_MS)))
def test_retry_delay_is_indexed_by_the_failing_attempt(attempt: int, delay: int) -> None:
    assert retry_at(attempt, NOW_MS, no_jitter) == NOW_MS + delay


def test_first_retry_runs_15_to_45_seconds_after_the_first_failure() -> None:
    assert retry_at(0, NOW_MS, no_jitter) == NOW_MS + 15 * SECOND
    assert retry_at(0, NOW_MS, max_jitter) == NOW_MS + 15 * SECOND + JITTER_MS - 1


def test_attempts_past_the_table_use_its_last_entry() -> None:
    assert retry_at(10, NOW_MS, no_jitter) == NOW_MS + 2 * HOUR
    assert retry_at(99, NOW_MS, no_jitter) == NOW_MS + 2 * HOUR


def test_negative_attempt_is_treated_as_the_first() -> None:
    assert retry_at(-1, NOW_MS, no_jitter) == NOW_MS + 15 * SECOND


def test_jitter_is_uniform_in_zero_to_thirty_seconds() -> None:
    assert retry_at(3, NOW_MS, lambda: 0.5) == NOW_MS + 2 * MINUTE + 15_000
    assert JITTER_MS == 30_000


def test_jitter_stays_below_thirty_seconds_even_if_rand_returns_one() -> None:
    assert retry_at(0, NOW_MS, lambda: 1.0) == NOW_MS + 15 * SECOND + JITTER_MS - 1


def test_fixed_interval_replaces_table_and_jitter() -> None:
    assert retry_at(7, NOW_MS, max_jitter, fixed_interval_ms=500) == NOW_MS + 500


def test_retry_after_seconds_count_from_now_truncated_to_the_second() -> None:
    assert parse_retry_after("30", NOW_MS) == NOW_MS - 250 + 30 * SECOND


def test_retry_after_of_seven_digits_is_still_seconds_then_clamped_to_a_day() -> None:
    assert parse_retry_after("1000000", NOW_MS) == NOW_MS + 24 * HOUR


def test_retry_after_rfc3339_date_as_the_python_sdk_sends_it() -> None:
    assert parse_retry_after("2026-01-01T00:10:00.000Z", NOW_MS) == NOW_MS - 250 + 10 * MINUTE


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Thu, 01 Jan 2026 01:00:00 GMT", NOW_MS) == NOW_MS - 250 + HOUR


def test_retry_after_is_clamped_to_at_least_one_second() -> None:
    assert parse_retry_after("2025-01-01T00:00:00Z", NOW_MS) == NOW_MS + SECOND
    assert parse_retry_after("1", NOW_MS) == NOW_MS + SECOND


def test_retry_after_is_clamped_to_at_most_a_day() -> None:
    assert parse_retry_after("2027-01-01T00:00:00Z", NOW_MS) == NOW_MS + 24 * HOUR


@pytest.mark.parametrize("value", ["", "0", "-5", "soon", "1.5", "abcdefghijkl", "٣"])
def test_unparseable_retry_after_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW_MS) is None


def test_retry_counts_default_to_four_and_cap_at_twenty() -> None:
    assert DEFAULT_RETRIES == 4
    assert MAX_RETRIES == 20


def test_should_retry_while_attempts_remain() -> None:
    assert should_retry(0, 5, no_retry=False)
    assert should_retry(3, 5, no_retry=False)


def test_should_not_retry_on_the_final_attempt() -> None:
    assert not should_retry(4, 5, no_retry=False)
    assert not should_retry(0, 1, no_retry=False)


def test_no_retry_wins_even_with_attempts_left() -> None:
    assert not should_retry(0, 5, no_retry=True)
