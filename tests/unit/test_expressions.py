"""Unit tests for app.expressions: Inngest-dialect CEL on top of cel-python."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from app.expressions import (
    ExpressionError,
    compile_expression,
    evaluate_bool,
    evaluate_value,
    extract_match_key,
    interpolate_event,
    lookup_path,
    match_key_value,
    validate_expression,
)

EVENT: dict[str, Any] = {
    "name": "shop/order.created",
    "id": "01HZX",
    "ts": 1_700_000_000_000,
    "data": {
        "id": "42",
        "count": 3,
        "price": 2.5,
        "whole": 1.0,
        "tags": ["a", "b"],
        "items": [{"sku": "x1", "qty": 2}],
        "user": {"email": "Ann@Example.com", "plan": "pro"},
        "nothing": None,
    },
    "user": {},
}
VARS: dict[str, Any] = {"event": EVENT}


# --- trigger-style boolean evaluation ---


@pytest.mark.parametrize(
    "source",
    [
        "event.name == 'shop/order.created'",
        "event.data.count > 2 && event.data.user.plan == 'pro'",
        "event.data.id == '42'",
        "event.data.tags.size() == 2",
        "event.ts > 0",
    ],
)
def test_matching_trigger_expression_is_true(source: str) -> None:
    assert evaluate_bool(source, VARS) is True


@pytest.mark.parametrize(
    "source",
    [
        "event.name == 'other'",
        "event.data.count > 3",
        "event.data.id == 42",  # a string never equals a number
        "event.data.count",  # truthy but not boolean true
        "'yes'",
    ],
)
def test_non_matching_or_non_boolean_expression_is_false(source: str) -> None:
    assert evaluate_bool(source, VARS) is False


def test_evaluate_value_returns_plain_python_values() -> None:
    value = evaluate_value("{'n': event.data.count, 'l': [1.5, true, null, 'x']}", VARS)
    assert value == {"n": 3, "l": [1.5, True, None, "x"]}
    assert type(value["n"]) is int
    assert type(value["l"][1]) is bool
    assert type(evaluate_value("event.data.id", VARS)) is str


# --- missing attributes ---


def test_missing_attribute_evaluates_to_null() -> None:
    assert evaluate_value("event.data.missing", VARS) is None
    assert evaluate_bool("event.data.missing == null", VARS) is True
    assert evaluate_bool("event.data['missing'] == null", VARS) is True


def test_attribute_of_missing_parent_is_false_not_an_error() -> None:
    assert evaluate_value("event.data.a.b == 1", VARS) is False
    assert evaluate_value("event.data.nothing.deeper", VARS) is None


def test_unbound_top_level_variables_are_null() -> None:
    assert evaluate_bool("async.data.id == null && vars.x == null", VARS) is True


def test_has_detects_absence_even_though_access_is_lenient() -> None:
    assert evaluate_bool("has(event.data.count)", VARS) is True
    assert evaluate_bool("has(event.data.nothing)", VARS) is True  # present, although null
    assert evaluate_bool("has(event.data.missing)", VARS) is False
    assert evaluate_bool("has(event.data.a.b)", VARS) is False


# --- loose typing ---


@pytest.mark.parametrize(
    "source",
    [
        "1 == 1.0",
        "event.data.whole == 1",
        "event.data.count == 3.0",
        "event.data.count < 3.5",
        "event.data.price >= 2",
        "[1, 2] == [1.0, 2]",
        "{'a': 1} == {'a': 1.0}",
        "3.0 in event.data.items.map(i, i.qty + 1)",
        "event.data.count * 0.5 == 1.5",
    ],
)
def test_int_and_double_compare_numerically(source: str) -> None:
    assert evaluate_value(source, VARS) is True


def test_json_int_and_float_from_different_events_are_equal() -> None:
    variables = {"event": {"data": {"n": 7}}, "async": {"data": {"n": 7.0}}}
    assert evaluate_bool("async.data.n == event.data.n", variables) is True


@pytest.mark.parametrize(
    ("source", "expected"),
    [("'1' == 1", False), ("'1' != 1", True), ("true == 1", False), ("null == 0", False)],
)
def test_mismatched_types_are_unequal_rather_than_errors(source: str, expected: bool) -> None:
    assert evaluate_value(source, {}) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'order-' + event.data.count", "order-3"),
        ("event.data.count + '-x'", "3-x"),
        ("'p=' + event.data.price", "p=2.5"),
        ("'w=' + event.data.whole", "w=1"),
        ("'b=' + true", "b=true"),
        ("'n=' + null", "n=null"),
        ("'a' + 'b'", "ab"),
    ],
)
def test_plus_concatenates_a_string_with_any_value(source: str, expected: str) -> None:
    assert evaluate_value(source, VARS) == expected


# --- macros and functions ---


@pytest.mark.parametrize(
    "source",
    [
        "event.data.tags.exists(t, t == 'b')",
        "event.data.tags.all(t, t.size() == 1)",
        "event.data.tags.exists_one(t, t == 'a')",
        "event.data.items.map(i, i.sku) == ['x1']",
        "event.data.tags.filter(t, t != 'a') == ['b']",
        "size(event.data.tags) == 2",
        "'a' in event.data.tags",
        "'plan' in event.data.user",
        "event.data.user.email.matches('^[A-Za-z]+@')",
        "event.data.user.email.startsWith('Ann')",
        "event.data.user.email.endsWith('.com')",
        "event.data.user.email.contains('@')",
        "event.data.count > 1 ? true : false",
        "int('7') == 7 && string(7) == '7' && double(1) == 1.0",
        "type(event.data.id) == string",
    ],
)
def test_standard_macros_and_functions_work(source: str) -> None:
    assert evaluate_value(source, VARS) is True


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("lowercase(event.data.user.email)", "ann@example.com"),
        ("uppercase(event.data.user.plan)", "PRO"),
        ("event.data.user.plan.uppercase()", "PRO"),
        ("json_parse('{\"a\": [1, 2.5]}')", {"a": [1, 2.5]}),
        ("b64decode('aGVsbG8=')", "hello"),
    ],
)
def test_inngest_extra_functions(source: str, expected: Any) -> None:
    assert evaluate_value(source, VARS) == expected


# --- errors ---


@pytest.mark.parametrize("source", ["event.data.id ==", "a ==== b", "(1", "", "   ", "'unclosed"])
def test_syntax_error_raises_expression_error_naming_the_expression(source: str) -> None:
    with pytest.raises(ExpressionError) as info:
        validate_expression(source)
    assert info.value.expression == source
    assert isinstance(info.value, ValueError)
    with pytest.raises(ExpressionError):
        compile_expression(source)


@pytest.mark.parametrize(
    ("source", "name"),
    [("evnt.data.id == 1", "evnt"), ("nope(1)", "nope"), ("event.data.id.frob()", "frob")],
)
def test_undeclared_names_are_rejected_at_compile_time(source: str, name: str) -> None:
    with pytest.raises(ExpressionError, match=name):
        validate_expression(source)


def test_macro_variables_are_declared_names() -> None:
    validate_expression("event.data.items.exists(item, item.qty > 1)")


def test_syntax_error_message_gives_the_position() -> None:
    with pytest.raises(ExpressionError, match="syntax error at line 1, column 5"):
        validate_expression("a ==== b")


@pytest.mark.parametrize(
    "source",
    [
        "event.data.count / 0 == 1",
        "event.data.tags[5] == 'x'",
        "event.data.id < 1",
        "event.data.missing > 5",
        "json_parse('not json') == 1",
        "event.data.id.size() == event.data.id.missing.size()",
    ],
)
def test_evaluation_error_makes_evaluate_bool_false(source: str) -> None:
    assert evaluate_bool(source, VARS) is False
    with pytest.raises(ExpressionError):
        evaluate_value(source, VARS)


def test_evaluate_bool_is_false_for_a_syntax_error() -> None:
    assert evaluate_bool("event.data.id ==", VARS) is False


def test_errors_short_circuit_like_cel() -> None:
    assert evaluate_bool("false && event.data.count / 0 == 1", VARS) is False
    assert evaluate_bool("true || event.data.count / 0 == 1", VARS) is True


def test_an_error_inside_map_is_a_cel_error_value_that_or_can_absorb() -> None:
    assert evaluate_value("[0, 1].map(x, 1 / x) == [] || true", {}) is True
    with pytest.raises(ExpressionError, match="divide by zero"):
        evaluate_value("[0, 1].map(x, 1 / x)", {})


def test_evaluation_error_message_is_concise() -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate_value("json_parse('x')", {})
    assert "json_parse()" in info.value.reason
    assert "activation" not in str(info.value)


# --- compile cache and threads ---


def test_deeply_parenthesised_expression_still_evaluates() -> None:
    assert evaluate_value("(" * 60 + "event.data.count" + ")" * 60 + " == 3", VARS) is True


def test_compile_results_are_cached_by_source() -> None:
    first = compile_expression("event.data.count == 3")
    assert compile_expression("event.data.count == 3") is first
    assert first.source == "event.data.count == 3"
    assert first.evaluate(VARS) is True


def test_concurrent_evaluation_is_consistent() -> None:
    failures: list[Any] = []

    def work(n: int) -> None:
        variables = {"event": {"data": {"n": n}}, "async": {"data": {"n": float(n)}}}
        for _ in range(50):
            if not evaluate_bool(f"event.data.n == async.data.n && event.data.n == {n}", variables):
                failures.append(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --- interpolation ---


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("async.data.id == event.data.id", 'async.data.id == "42"'),
        ("event.data.count == async.data.count", "3 == async.data.count"),
        ("async.data.p == event.data.price", "async.data.p == 2.5"),
        ("async.data.n == event.data.nothing", "async.data.n == null"),
        ("async.data.n == event.data.missing.deep", "async.data.n == null"),
        ("async.data.u == event.data.user.plan", 'async.data.u == "pro"'),
        ("async.data.s == event.data['id']", 'async.data.s == "42"'),
        ("async.data.s == event.data.items[0].sku", 'async.data.s == "x1"'),
        ("async.data.t == event.data.tags", 'async.data.t == ["a", "b"]'),
        ("async.data.i == event.data.items", 'async.data.i == [{"sku": "x1", "qty": 2}]'),
        ("async.data.v == event.data.user.missing", "async.data.v == null"),
        ("event.data.id.startsWith(async.data.p)", '"42".startsWith(async.data.p)'),
        ("has(event.data.count) && has(event.data.missing)", "true && false"),
    ],
)
def test_interpolation_replaces_event_references_with_literals(source: str, expected: str) -> None:
    assert interpolate_event(source, EVENT) == expected


def test_interpolation_escapes_quotes_and_control_characters() -> None:
    text = 'say "hi" \\ it\'s\n\ttabbed é 😀'
    result = interpolate_event("async.data.s == event.data.s", {"data": {"s": text}})
    assert result.startswith('async.data.s == "say \\"hi\\"')
    assert evaluate_bool(result, {"async": {"data": {"s": text}}}) is True


def test_interpolation_leaves_event_inside_string_literals_untouched() -> None:
    source = "async.data.s == 'event.data.id' && \"event\" == event.name"
    expected = 'async.data.s == \'event.data.id\' && "event" == "shop/order.created"'
    assert interpolate_event(source, EVENT) == expected


def test_interpolation_leaves_async_and_event_fields_of_async_untouched() -> None:
    source = "async.event.data.id == 1 && async.data.event == 2"
    assert interpolate_event(source, EVENT) == source


def test_interpolated_expression_evaluates_like_the_original() -> None:
    source = "async.data.order == event.data.id && async.data.qty >= event.data.count"
    incoming = {"data": {"order": "42", "qty": 3.0}}
    interpolated = interpolate_event(source, EVENT)
    assert "event" not in interpolated
    assert evaluate_bool(interpolated, {"async": incoming}) is True
    assert evaluate_bool(source, {"event": EVENT, "async": incoming}) is True


def test_interpolation_rejects_invalid_expressions() -> None:
    with pytest.raises(ExpressionError):
        interpolate_event("async.data.id == ", EVENT)


def test_interpolation_refuses_a_result_that_could_not_be_evaluated() -> None:
    """An event value pasted in as a literal can make the condition too long or too deep:
    refused now rather than stored as a wait that never matches."""
    with pytest.raises(ExpressionError, match="filled in, expression is too long"):
        interpolate_event("async.data.s == event.data.s", {"data": {"s": "x" * 20_000}})
    deep: dict[str, object] = {}
    for _ in range(2_000):
        deep = {"d": deep}
    with pytest.raises(ExpressionError):
        interpolate_event("async.data.v == event.data.v", {"data": {"v": deep}})


# --- equality keys ---


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('async.data.id == "42"', ("data.id", "42")),
        ('"42" == async.data.id', ("data.id", "42")),
        ("async.data.id == 42", ("data.id", 42)),
        ("async.data.amount == -4.5", ("data.amount", -4.5)),
        ("async.data.flag == true", ("data.flag", True)),
        ("async.data.gone == null", ("data.gone", None)),
        ("async.name == 'x' && async.data.id == '42'", ("name", "x")),
        ("async.data.n > 1 && async.data.id == '42'", ("data.id", "42")),
        ("(async.data.n > 1 && (async.data.id == '42')) && true", ("data.id", "42")),
        ("async.data['id'] == '42'", ("data.id", "42")),
        ("(async.data.id) == 'x'", ("data.id", "x")),
    ],
)
def test_extract_match_key(source: str, expected: tuple[str, Any] | None) -> None:
    assert extract_match_key(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "async.data.id == '42' || async.data.id == '43'",
        "async.data.id != '42'",
        "async.data.n > 1",
        "!(async.data.id == '42')",
        "async.data.id == '42' ? true : false",
        "async.data.id == async.data.other",
        "async.data.id == 40 + 2",
        "async.data.items[0] == 1",
        "async.data.id.size() == 2",
        "async == 1",
        "async.data.b == b'bytes'",
        "event.data.id == '42'",
        "async.data.id == ",
    ],
)
def test_extract_match_key_is_none_when_no_equality_is_required(source: str) -> None:
    assert extract_match_key(source) is None


@pytest.mark.parametrize(
    "source", ["async.data.x == [1]", "async.data.x == [[1]]", "(([1])) == async.a"]
)
def test_extract_match_key_is_none_when_the_literal_is_inside_a_list(source: str) -> None:
    # `== [1]` is no `== 1`: indexing the pause under 1 would hide it from its event.
    assert extract_match_key(source) is None


def test_interpolated_wait_expression_yields_an_index_key_matching_the_incoming_event() -> None:
    interpolated = interpolate_event("async.data.order_id == event.data.id", EVENT)
    path, literal = extract_match_key(interpolated) or ("", None)
    incoming = {"name": "shop/order.paid", "data": {"order_id": "42"}}
    assert match_key_value(lookup_path(incoming, path)) == match_key_value(literal)


# --- key normalisation and lookup ---


def test_match_key_value_treats_integral_floats_as_ints() -> None:
    assert match_key_value(1) == match_key_value(1.0)
    assert match_key_value(-0.0) == match_key_value(0)
    assert match_key_value([1.0, {"b": 2, "a": 1.0}]) == match_key_value([1, {"a": 1, "b": 2.0}])


@pytest.mark.parametrize(
    ("left", "right"),
    [("42", 42), (True, 1), (False, 0), (None, "null"), (1.5, 1), ("", None), ([1], "[1]")],
)
def test_match_key_value_distinguishes_types(left: Any, right: Any) -> None:
    assert match_key_value(left) != match_key_value(right)


def test_match_key_agrees_with_loose_equality() -> None:
    for left, right in [(1, 1.0), ("42", 42), (True, 1), (2**70, float(2**70))]:
        equal = evaluate_bool("async.a == async.b", {"async": {"a": left, "b": right}})
        assert (match_key_value(left) == match_key_value(right)) is equal, (left, right)


def test_lookup_path_follows_dotted_keys_and_returns_none_when_absent() -> None:
    assert lookup_path(EVENT, "data.user.plan") == "pro"
    assert lookup_path(EVENT, "data.nothing") is None
    assert lookup_path(EVENT, "data.missing.deeper") is None
    assert lookup_path(EVENT, "data.id.length") is None
    assert lookup_path(EVENT, "") is EVENT
