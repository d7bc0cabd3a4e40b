"""Unit tests for the compile-time limits of app.expressions: length and nesting depth, and that
every expression within them evaluates without RecursionError, on any thread."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.expressions import (
    DEFAULT_MAX_COST,
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    CompiledExpression,
    ExpressionError,
    compile_expression,
    evaluate_value,
)

VARS: dict[str, Any] = {"event": {"data": {"a": {"a": {"a": 1}}}}}

# Each wraps an expression in one more level of a construct that makes the evaluator recurse.
CONSTRUCTS: dict[str, Callable[[str, int], str]] = {
    "parentheses": lambda s, i: f"({s})",
    "chained &&": lambda s, i: f"{s} && true",
    "chained ||": lambda s, i: f"{s} || false",
    "chained +": lambda s, i: f"{s} + 1",
    "chained ==": lambda s, i: f"{s} == true",
    "ternary": lambda s, i: f"false ? 1 : {s}",
    "not": lambda s, i: f"!{s}",
    "negation": lambda s, i: f"-({s})",
    "list": lambda s, i: f"[{s}]",
    "map": lambda s, i: f"{{'a': {s}}}",
    "index": lambda s, i: f"[{s}][0]",
    "exists": lambda s, i: f"[1].exists(x{i}, {s})",
    "map macro": lambda s, i: f"[1].map(x{i}, {s})",
    "function": lambda s, i: f"string({s})",
    "method": lambda s, i: f"[{s}].size()",
    "method argument": lambda s, i: f"[1].contains({s})",
    "has": lambda s, i: f"has({{'a': {s}}}.a)",
    "selection": lambda s, i: f"{s}.a",
}
SEEDS = {"negation": "1", "selection": "event", "chained +": "1"}


def nest(name: str, levels: int) -> str:
    build, source = CONSTRUCTS[name], SEEDS.get(name, "true")
    for i in range(levels):
        source = build(source, i)
    return source


def deepest(name: str) -> CompiledExpression:
    """The construct nested as deep as compiles, padded with parentheses to exactly the limit."""
    first, second = (compile_expression(nest(name, n)).depth for n in (1, 2))
    levels = (MAX_NESTING_DEPTH - first) // (second - first) + 1
    compiled = compile_expression(nest(name, levels))
    while compiled.depth < MAX_NESTING_DEPTH:
        compiled = compile_expression(f"({compiled.source})")
    assert compiled.depth == MAX_NESTING_DEPTH
    return compiled


@pytest.fixture(scope="module")
def at_the_limit() -> dict[str, CompiledExpression]:
    return {name: deepest(name) for name in CONSTRUCTS}


def evaluate_all(expressions: dict[str, CompiledExpression]) -> dict[str, str]:
    """Evaluate each; the outcome is "ok", an evaluation error's reason, or the exception."""
    outcomes = {}
    for name, compiled in expressions.items():
        try:
            compiled.evaluate(VARS)
            outcomes[name] = "ok"
        except ExpressionError as exc:
            outcomes[name] = exc.reason
        except RecursionError as exc:  # pragma: no cover - what the limit exists to prevent
            outcomes[name] = repr(exc)
    return outcomes


def assert_all_evaluated(outcomes: dict[str, str]) -> None:
    assert outcomes == dict.fromkeys(CONSTRUCTS, "ok")


# --- length ---


def test_an_expression_over_the_length_limit_is_refused() -> None:
    source = "event.data.a == 1 || " * (MAX_EXPRESSION_LENGTH // 20) + "true"
    assert len(source) > MAX_EXPRESSION_LENGTH
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    limit = f"the limit is {MAX_EXPRESSION_LENGTH}"
    assert info.value.reason == f"expression is too long: {len(source)} characters, {limit}"
    assert len(str(info.value)) < 300  # the message quotes only the start of the expression


def test_an_expression_at_the_length_limit_compiles_and_fits_the_default_budget() -> None:
    # The flattest long expression has the most nodes: a list literal of one-digit numbers.
    count = (MAX_EXPRESSION_LENGTH - 1) // 2
    source = "[" + ",".join(["1"] * count) + "]"
    assert len(source) <= MAX_EXPRESSION_LENGTH
    assert compile_expression(source).evaluate({}, max_cost=DEFAULT_MAX_COST) == [1] * count


# --- depth ---


def test_5000_nested_parentheses_are_refused_promptly_at_compile_time() -> None:
    source = "(" * 5000 + "event.data.a == 1" + ")" * 5000
    started = time.monotonic()
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    assert time.monotonic() - started < 5
    expected = f"expression is nested too deeply: 5000 levels, the limit is {MAX_NESTING_DEPTH}"
    assert info.value.reason == expected


@pytest.mark.parametrize(
    "source",
    [
        " + ".join(["1"] * 300),
        " && ".join(["true"] * 300),
        "!" * 300 + "true",
        "false ? 1 : " * 300 + "true",
        "event" + ".a" * 300,
    ],
)
def test_a_chain_nested_past_the_limit_without_brackets_is_refused(source: str) -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression(source)


@pytest.mark.parametrize("name", CONSTRUCTS)
def test_one_level_past_the_limit_is_refused(
    name: str, at_the_limit: dict[str, CompiledExpression]
) -> None:
    source = CONSTRUCTS[name](at_the_limit[name].source, MAX_NESTING_DEPTH)
    with pytest.raises(ExpressionError, match=f"the limit is {MAX_NESTING_DEPTH}"):
        compile_expression(f"({source})")


# --- every expression that compiles evaluates ---


def test_the_deepest_expressions_evaluate_in_the_main_thread(
    at_the_limit: dict[str, CompiledExpression],
) -> None:
    assert_all_evaluated(evaluate_all(at_the_limit))


def test_the_deepest_expressions_evaluate_in_a_thread_pool(
    at_the_limit: dict[str, CompiledExpression],
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert_all_evaluated(pool.submit(evaluate_all, at_the_limit).result())


def test_the_deepest_expressions_evaluate_via_asyncio_to_thread(
    at_the_limit: dict[str, CompiledExpression],
) -> None:
    assert_all_evaluated(asyncio.run(asyncio.to_thread(evaluate_all, at_the_limit)))


@pytest.fixture
def small_thread_stacks() -> Iterator[None]:
    previous = threading.stack_size(256 * 1024)  # musl's default is smaller than glibc's 8 MiB
    try:
        yield
    finally:
        threading.stack_size(previous)


@pytest.mark.usefixtures("small_thread_stacks")
def test_the_deepest_expressions_compile_and_evaluate_on_a_small_thread_stack() -> None:
    # Evaluation recursion stays in Python frames, which use no C stack; so does parsing.
    outcomes: dict[str, str] = {}

    def work() -> None:
        compile_expression.cache_clear()
        outcomes.update(evaluate_all({name: deepest(name) for name in CONSTRUCTS}))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert_all_evaluated(outcomes)


def test_the_deepest_expressions_leave_room_for_a_deep_caller(
    at_the_limit: dict[str, CompiledExpression],
) -> None:
    # A server calls in from a few dozen frames down; leave it hundreds.
    assert sys.getrecursionlimit() >= 1000

    def deep(frames: int) -> dict[str, str]:
        return deep(frames - 1) if frames else evaluate_all(at_the_limit)

    assert_all_evaluated(deep(300))


def test_deeply_nested_event_data_is_compared_without_recursion() -> None:
    nested: Any = 1
    for _ in range(5000):
        nested = [nested]
    variables = {"event": {"data": {"x": nested, "y": nested}}}
    assert evaluate_value("event.data.x == event.data.y", variables, max_cost=None) is True
