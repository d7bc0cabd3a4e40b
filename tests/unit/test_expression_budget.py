"""Unit tests for metered, lazy evaluation in app.expressions: the cost budget, the deadline and
reading big events without converting them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.expressions import (
    DEFAULT_MAX_COST,
    ExpressionBudgetExceeded,
    ExpressionError,
    compile_expression,
    evaluate_bool,
    evaluate_value,
)

BIG = 50_000  # the size of list that stalled a server (a ~400 KB event)


@pytest.fixture(scope="module")
def big_event() -> dict[str, Any]:
    return {"name": "big", "data": {"a": 1, "items": list(range(BIG)), "tags": {"x": 1}}}


# --- the budget ---


def test_exists_over_a_huge_list_exceeds_the_default_budget(big_event: dict[str, Any]) -> None:
    started = time.process_time()
    with pytest.raises(ExpressionBudgetExceeded) as info:
        evaluate_bool("event.data.items.exists(x, x == -1)", {"event": big_event})
    assert time.process_time() - started < 5
    assert f"cost budget of {DEFAULT_MAX_COST} units" in info.value.reason
    assert isinstance(info.value, ExpressionError)


def test_a_nested_comprehension_is_stopped_by_the_budget(big_event: dict[str, Any]) -> None:
    source = "event.data.items.exists(x, event.data.items.exists(y, y == x + 0.5))"
    started = time.process_time()
    with pytest.raises(ExpressionBudgetExceeded):
        evaluate_bool(source, {"event": big_event})
    assert time.process_time() - started < 5


def test_without_a_limit_the_same_evaluation_completes(big_event: dict[str, Any]) -> None:
    source = "event.data.items.exists(x, x == -1)"
    assert evaluate_bool(source, {"event": big_event}, max_cost=None) is False


def threshold(source: str, variables: dict[str, Any]) -> int:
    """The smallest max_cost under which ``source`` evaluates."""
    low, high = 1, 10_000
    while low < high:
        middle = (low + high) // 2
        try:
            evaluate_value(source, variables, max_cost=middle)
            high = middle
        except ExpressionBudgetExceeded:
            low = middle + 1
    return low


def test_the_cost_is_deterministic_and_grows_with_the_work() -> None:
    source = "event.data.items.all(x, x >= 0)"
    small = {"event": {"data": {"items": list(range(10))}}}
    large = {"event": {"data": {"items": list(range(100))}}}
    cost = threshold(source, small)
    assert threshold(source, small) == cost
    evaluate_value(source, small, max_cost=cost)
    with pytest.raises(ExpressionBudgetExceeded):
        evaluate_value(source, small, max_cost=cost - 1)
    assert threshold(source, large) > 5 * cost


def test_realistic_expressions_over_a_few_kb_event_use_a_small_part_of_the_budget() -> None:
    items = [{"sku": f"sku-{i}", "qty": i % 7, "tags": ["a", "b"]} for i in range(100)]
    event = {"name": "shop/order.created", "data": {"id": "o-1", "items": items, "n": 3}}
    for source in [
        "event.name == 'shop/order.created' && event.data.n > 2",
        "event.data.items.exists(i, i.qty > 5 && i.sku.startsWith('sku-9'))",
        "event.data.items.filter(i, 'a' in i.tags).map(i, i.qty).size() == 100",
        "event.data == event.data && event.data.id + '-x' == 'o-1-x'",
    ]:
        assert 5 < threshold(source, {"event": event}) < DEFAULT_MAX_COST // 10, source


def test_evaluate_bool_raises_budget_errors_but_answers_false_for_other_errors() -> None:
    variables = {"event": {"data": {"items": [1, 2, 3]}}}
    assert evaluate_bool("event.data.items[7] == 1", variables, max_cost=100) is False
    assert evaluate_bool("event.data.items.exists(x, x == 3)", variables, max_cost=100) is True
    with pytest.raises(ExpressionBudgetExceeded):
        evaluate_bool("event.data.items.exists(x, x == 3)", variables, max_cost=5)


def test_an_error_value_swallowed_by_or_does_not_swallow_the_budget() -> None:
    # `||` absorbs errors of its operands; running out of budget is no such error.
    source = "event.data.items.map(x, x * 2).size() > 0 || true"
    with pytest.raises(ExpressionBudgetExceeded):
        evaluate_bool(source, {"event": {"data": {"items": list(range(100))}}}, max_cost=50)


@pytest.mark.parametrize(
    "source",
    [
        "false && event.data.items.exists(x, x == -1)",
        "true || event.data.items.exists(x, x == -1)",
        "event.data.a == 2 && event.data.items.exists(x, x == -1)",
    ],
)
def test_and_or_skip_a_right_side_that_cannot_change_the_result(
    big_event: dict[str, Any], source: str
) -> None:
    evaluate_value(source, {"event": big_event}, max_cost=20)


@pytest.mark.parametrize("max_cost", [0, -1, True])
def test_max_cost_must_be_a_positive_integer(max_cost: int) -> None:
    with pytest.raises(ValueError, match="max_cost"):
        compile_expression("1 == 1").evaluate({}, max_cost=max_cost)


# --- the deadline ---


def test_a_past_deadline_stops_evaluation_at_once() -> None:
    with pytest.raises(ExpressionBudgetExceeded, match="deadline"):
        evaluate_bool("1 == 1", {}, deadline=time.monotonic() - 1)


def test_a_deadline_stops_a_long_evaluation_without_a_cost_limit(
    big_event: dict[str, Any],
) -> None:
    source = "event.data.items.exists(x, event.data.items.exists(y, y == x + 0.5))"
    started = time.monotonic()
    with pytest.raises(ExpressionBudgetExceeded, match="deadline"):
        evaluate_bool(source, {"event": big_event}, max_cost=None, deadline=started + 0.05)
    assert time.monotonic() - started < 5


def test_a_future_deadline_lets_a_quick_evaluation_finish() -> None:
    assert evaluate_bool("1 == 1", {}, deadline=time.monotonic() + 60) is True


# --- what work costs ---


def test_big_strings_cost_by_their_length() -> None:
    text = "x" * 1_000_000
    variables = {"event": {"data": {"s": text, "items": list(range(10))}}}
    source = "event.data.items.all(i, (event.data.s + event.data.s).size() > 0)"
    assert evaluate_bool(source, variables, max_cost=None) is True
    with pytest.raises(ExpressionBudgetExceeded):
        evaluate_bool(source, variables)


def test_membership_in_a_big_list_costs_by_its_length() -> None:
    variables = {"event": {"data": {"items": list(range(5_000)), "keys": list(range(-50, 0))}}}
    for source in [
        "event.data.keys.exists(k, k in event.data.items)",  # read in place
        "event.data.keys.exists(k, k in event.data.items.map(x, x))",  # a computed list
    ]:
        assert evaluate_bool(source, variables, max_cost=None) is False
        with pytest.raises(ExpressionBudgetExceeded):
            evaluate_bool(source, variables, max_cost=20_000)


def test_percent_is_arithmetic_not_string_formatting() -> None:
    # Python would format ('%s' % 1); CEL's % takes numbers only.
    with pytest.raises(ExpressionError, match="no matching overload"):
        evaluate_value("'%s' % 1", {})


# --- big events are read in place ---


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.a == 1", True),
        ("event.data.items[49999] == 49999", True),
        ("event.data.items.size() == 50000", True),
        ("size(event.data.items)", BIG),
        ("has(event.data.items) && !has(event.data.nope)", True),
        ("'items' in event.data && 'x' in event.data.tags", True),
        ("3 in event.data.items", True),
        ("event.data.items.exists(x, x == 3)", True),
        ("event.data.items.all(x, x < 3)", False),
        ("event.name", "big"),
    ],
)
def test_a_few_elements_of_a_big_event_cost_a_few_units(
    big_event: dict[str, Any], source: str, expected: Any
) -> None:
    assert evaluate_value(source, {"event": big_event}, max_cost=100) == expected


def test_parts_of_the_event_an_expression_does_not_touch_are_never_converted() -> None:
    event = {"data": {"a": 1, "opaque": object()}}
    assert evaluate_bool("event.data.a == 1", {"event": event}) is True
    with pytest.raises(ExpressionError, match="cannot pass a object"):
        evaluate_value("event.data", {"event": event})


def test_converting_a_whole_big_event_is_charged(big_event: dict[str, Any]) -> None:
    with pytest.raises(ExpressionBudgetExceeded):
        evaluate_value("event.data == {}", {"event": big_event})
    assert evaluate_value("event.data == {}", {"event": big_event}, max_cost=None) is False
