"""Flow-control maths: GCRA throttle reservations, rate limits, priorities, keys."""

from __future__ import annotations

from domain.flow import (
    clamp_priority,
    concurrency_key,
    cron_jitter_ms,
    rate_limit_check,
    short_hash,
    throttle_reserve,
)

T0 = 1_800_000_000_000


def test_throttle_lets_limit_plus_burst_start_at_once_then_one_per_emission() -> None:
    tat, starts = None, []
    for _ in range(6):
        r = throttle_reserve(tat, T0, limit=2, burst=1, period_ms=10_000)
        tat = r.tat
        starts.append(r.start_at - T0)
    assert starts == [0, 0, 0, 5_000, 10_000, 15_000]


def test_a_throttled_key_recovers_after_idle_time() -> None:
    r = None
    tat = None
    for _ in range(3):
        r = throttle_reserve(tat, T0, limit=1, burst=1, period_ms=1_000)
        tat = r.tat
    assert r is not None and r.start_at == T0 + 1_000
    later = throttle_reserve(tat, T0 + 60_000, limit=1, burst=1, period_ms=1_000)
    assert later.start_at == T0 + 60_000


def test_rate_limit_admits_a_tenth_of_the_limit_plus_one_in_a_burst() -> None:
    tat, allowed = None, 0
    for _ in range(50):
        d = rate_limit_check(tat, T0, limit=20, period_ms=60_000)
        if d.allowed:
            allowed += 1
            tat = d.tat
    assert allowed == 3  # floor(20/10) + 1


def test_rate_limit_sustains_limit_per_period() -> None:
    tat, allowed = None, 0
    for i in range(600):  # one attempt per 100 ms for a minute
        d = rate_limit_check(tat, T0 + i * 100, limit=10, period_ms=60_000)
        if d.allowed:
            allowed += 1
            tat = d.tat
    assert 10 <= allowed <= 12


def test_idempotency_as_a_rate_limit_allows_one_per_day() -> None:
    first = rate_limit_check(None, T0, limit=1, period_ms=86_400_000)
    assert first.allowed
    assert not rate_limit_check(first.tat, T0 + 3_600_000, limit=1, period_ms=86_400_000).allowed
    assert rate_limit_check(first.tat, T0 + 86_400_000, limit=1, period_ms=86_400_000).allowed


def test_priority_is_clamped_and_non_integers_are_zero() -> None:
    assert clamp_priority(600) == 600
    assert clamp_priority(10**9) == 43_200 and clamp_priority(-(10**9)) == -43_200
    assert clamp_priority("5") == 0 and clamp_priority(1.5) == 0 and clamp_priority(True) == 0
    assert clamp_priority(3.0) == 3


def test_keys_are_stable_and_distinguish_values() -> None:
    assert short_hash("a") == short_hash("a") != short_hash("b")
    assert short_hash(1) == short_hash(1.0)
    assert concurrency_key("fn", "F", None, None) == "f:F"
    k1 = concurrency_key("account", "A", "event.data.user", "u1")
    assert k1.startswith("a:A:") and k1 != concurrency_key("account", "A", "event.data.user", "u2")


def test_cron_jitter_is_deterministic_and_within_bounds() -> None:
    values = {cron_jitter_ms(f"job-{i}", 30_000) for i in range(200)}
    assert all(1_000 <= v < 30_000 for v in values) and len(values) > 100
    assert cron_jitter_ms("job-1", 30_000) == cron_jitter_ms("job-1", 30_000)
    assert cron_jitter_ms("job-1", 0) == 0
