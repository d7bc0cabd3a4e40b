"""CEL expressions in Inngest's dialect: this module owns parsing, validating and evaluating
trigger ``expression``s, waitForEvent/cancelOn ``if``s, flow-control key expressions and GraphQL
``query`` filters, plus the pause helpers built on them (``interpolate_event``,
``extract_match_key``, ``match_key_value``).  ``app.expression_evaluator`` walks the syntax tree,
``app.expression_values`` owns values and Inngest's loosely typed operators (``1 == 1.0``,
``'a' + 1``, missing keys are null) and ``app.expression_budget`` the metering.

Known differences from Inngest's cel-go: there is no type checker, so compilation rejects only
syntax errors and undeclared variables/functions (macro variables count as declared across the
whole expression) and type errors surface at evaluation; ``now()`` is not provided; integers
beyond int64 become doubles; interpolation does not notice a macro variable named ``event``
shadowing the real one; the length limit is lower (below).

Every cost an outside caller controls is bounded.  Compilation refuses an expression longer than
``MAX_EXPRESSION_LENGTH`` code points or nested deeper than ``MAX_NESTING_DEPTH`` syntax-tree
levels (a token scan refuses a bracket bomb before the parser builds its tree), and every
expression that compiles evaluates without RecursionError, on the event loop or in a worker
thread, even one with a small stack.  Evaluation charges every step to a budget (``max_cost``
units, ``DEFAULT_MAX_COST`` by default, and an optional ``time.monotonic()`` ``deadline``) and
raises ``ExpressionBudgetExceeded`` when it runs out.  The caller's variables are read in place,
so ``event.data.a == 1`` costs the same over a 3 MiB event as over an empty one.

Exceptions::

    ValueError
     └── ExpressionError              does not compile, or (evaluate_value) did not evaluate
          └── ExpressionBudgetExceeded    over its cost budget or past its deadline; evaluate_bool
                                          raises it rather than answer False
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import lark
from celpy.celparser import CELParser
from celpy.evaluation import CELEvalError

from app.expression_budget import DEFAULT_MAX_COST, Budget, BudgetExhausted, metered
from app.expression_evaluator import MeteredEvaluator, literal_value
from app.expression_values import ALL_FUNCTIONS, INT64, to_plain

__all__ = [
    "DEFAULT_MAX_COST", "MAX_EXPRESSION_LENGTH", "MAX_NESTING_DEPTH", "VARIABLES",
    "CompiledExpression", "ExpressionBudgetExceeded", "ExpressionError", "compile_expression",
    "evaluate_bool", "evaluate_value", "extract_match_key", "interpolate_event", "lookup_path",
    "match_key_value", "validate_expression",
]  # fmt: skip

VARIABLES = frozenset({"event", "async", "vars"})
_MACROS = frozenset({"has", "dyn", "all", "exists", "exists_one", "map", "filter"})
_KNOWN_NAMES = VARIABLES | _MACROS | frozenset(ALL_FUNCTIONS)

# cel-go's parser allows 100,000 code points; lark parses in pure Python, 20-40 us per token,
# so 16 KiB bounds the worst parse (a flat list of one-digit numbers) at ~0.3 s and the nodes of
# any flat expression at ~8,000, which evaluate within DEFAULT_MAX_COST.
MAX_EXPRESSION_LENGTH = 16_384
# cel-go's parser stops at a recursion depth of 250.  Syntax-tree levels count every nested node
# (``a + b`` is two, ``(a)`` and ``a && b`` one); the evaluator needs at most ~2 Python frames a
# level, so 200 levels stay within ~410 frames, under half of Python's default limit.
MAX_NESTING_DEPTH = 200


class ExpressionError(ValueError):
    """An expression that does not compile, or (for ``evaluate_value``) did not evaluate."""

    def __init__(self, expression: str, reason: str) -> None:
        shown = expression if len(expression) <= 120 else expression[:100] + "…"
        super().__init__(f"{reason} in expression {shown!r}")
        self.expression = expression
        self.reason = reason


class ExpressionBudgetExceeded(ExpressionError):
    """Evaluation stopped part-way: over its ``max_cost`` units or past its ``deadline``.

    Unlike other evaluation errors this says nothing about the expression's value, so
    ``evaluate_bool`` raises it instead of answering False.
    """


# --- compiling ---


_parse_lock = threading.Lock()
# Rules that mostly have one child and then only pass its value up (every operand sits under
# about ten); the parser inlines them, shrinking the tree several-fold and with it the Python
# recursion a given nesting needs.
_FORWARDING = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary",
     "member", "primary"}
)  # fmt: skip
_OPENING, _CLOSING = frozenset({"LPAR", "LSQB", "LBRACE"}), frozenset({"RPAR", "RSQB", "RBRACE"})


def _normalise(ast: lark.Tree[Any]) -> lark.Tree[Any]:
    for node in ast.iter_subtrees():  # iterative, whatever the depth
        node.data = str(node.data)  # lark's Token compares in Python; the evaluator compares a lot
    return ast


def _depth(ast: lark.Tree[Any]) -> int:
    """The number of syntax-tree levels on the longest path from the root (iteratively)."""
    deepest, pending = 0, [(ast, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend((c, depth + 1) for c in node.children if isinstance(c, lark.Tree))
    return deepest


def _bracket_depth(parser: lark.Lark, source: str) -> int:
    """How deeply brackets nest, from tokens alone (a string literal is one token).

    Each bracket adds at least one tree level, so this bounds the depth from below at a tenth of
    the parser's cost: a bracket bomb is refused before lark builds a tree for it.
    """
    depth = deepest = 0
    try:
        for token in parser.lex(source):
            if token.type in _OPENING:
                depth += 1
                deepest = max(deepest, depth)
            elif token.type in _CLOSING:
                depth -= 1
    except lark.exceptions.LarkError:
        pass  # the parser reports it, with its position
    return deepest


def _too_deep(source: str, depth: int) -> ExpressionError:
    reason = f"expression is nested too deeply: {depth} levels, the limit is {MAX_NESTING_DEPTH}"
    return ExpressionError(source, reason)


@functools.cache
def _parser() -> lark.Lark:
    """cel-python's grammar with the forwarding rules inlined (``?rule``) by lark itself.

    Same language, but lark no longer builds the ~10 one-child nodes around every operand, which
    makes parsing 2-3x faster.
    """
    grammar = (Path(celpy.__file__).parent / "cel.lark").read_text()
    rules = "|".join(sorted(_FORWARDING))
    grammar = re.sub(rf"^({rules})(\s+:)", r"?\1\2", grammar, flags=re.MULTILINE)
    return lark.Lark(
        grammar,
        parser="lalr",
        start="expr",
        g_regex_flags=re.MULTILINE,
        lexer_callbacks={"IDENT": CELParser.ambiguous_literals},
        propagate_positions=True,
        maybe_placeholders=False,
        priority="invert",
    )


def _parse(source: str) -> lark.Tree[Any]:
    parser = _parser()
    with _parse_lock:  # lark does not promise that a parser is safe to share between threads
        if (depth := _bracket_depth(parser, source)) > MAX_NESTING_DEPTH:
            raise _too_deep(source, depth)
        try:
            tree = parser.parse(source)
        except lark.exceptions.UnexpectedInput as exc:
            where = f"line {exc.line}, column {exc.column}" if exc.line > 0 else "end of input"
            raise ExpressionError(source, f"syntax error at {where}") from exc
        except lark.exceptions.LarkError as exc:
            raise ExpressionError(source, "syntax error") from exc
    if (depth := _depth(tree := _normalise(tree))) > MAX_NESTING_DEPTH:
        raise _too_deep(source, depth)
    return tree


def _check_names(source: str, ast: lark.Tree[Any]) -> None:
    # cel-go rejects undeclared names at compile time; mirror that so typos fail at sync.
    bound: set[str] = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in _MACROS:
            args = node.children[2] if len(node.children) == 3 else None
            first = args.children[0] if isinstance(args, lark.Tree) and args.children else None
            names = list(first.scan_values(lambda v: isinstance(v, lark.Token))) if first else []
            bound.update(str(n) for n in names[:1] if len(names) == 1)
    for node in ast.iter_subtrees():
        if node.data in ("ident", "ident_arg", "dot_ident", "dot_ident_arg"):
            name = str(node.children[0])
            kind = "variable" if node.data.endswith("ident") else "function"
        elif node.data == "member_dot_arg":
            name, kind = str(node.children[1]), "function"
        else:
            continue
        if name not in _KNOWN_NAMES and not (kind == "variable" and name in bound):
            raise ExpressionError(source, f"undeclared reference to {kind} {name!r}")


@dataclass(frozen=True, eq=False)
class CompiledExpression:
    """A parsed, name-checked expression; immutable and safe to share across threads."""

    source: str
    ast: lark.Tree[Any] = field(repr=False)
    depth: int = 0  # syntax-tree levels, at most MAX_NESTING_DEPTH
    # Literal nodes' values, filled by the first evaluations (by node id; immutable values).
    _literals: dict[int, Any] = field(default_factory=dict, repr=False)

    def evaluate(
        self,
        variables: Mapping[str, Any],
        *,
        max_cost: int | None = DEFAULT_MAX_COST,
        deadline: float | None = None,
    ) -> Any:
        """Evaluate with ``event``/``async``/``vars`` (absent ones are null); plain values out.

        At most ``max_cost`` units of work (None: unlimited) and, when ``deadline`` (a
        ``time.monotonic()`` value) is given, no further than shortly after it; either limit
        raises ExpressionBudgetExceeded, any other failure ExpressionError.
        """
        budget = Budget(max_cost, deadline)
        roots = {name: variables.get(name) for name in VARIABLES}
        try:
            with metered(budget):
                evaluator = MeteredEvaluator(self.ast, roots, budget, self._literals)
                result = evaluator.visit(self.ast)
                plain = None if isinstance(result, CELEvalError) else to_plain(result)
        except BudgetExhausted as exc:
            raise ExpressionBudgetExceeded(self.source, str(exc)) from None
        except RecursionError as exc:  # only event data nested ~1000 deep can get here
            raise ExpressionError(self.source, "a value is nested too deeply") from exc
        except Exception as exc:  # cel-python reports some failures as bare Python exceptions
            raise ExpressionError(self.source, f"evaluation failed: {exc}") from exc
        if isinstance(result, CELEvalError):
            reason = str(result.args[0]) if result.args else "evaluation failed"
            # Undeclared-reference errors embed a dump of the whole activation.
            raise ExpressionError(self.source, reason.split(" (in activation", 1)[0])
        return plain


@functools.lru_cache(maxsize=2048)
def compile_expression(source: str) -> CompiledExpression:
    """Parse ``source`` once (results are cached); raise ExpressionError if it is invalid."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(str(source), "expression is empty")
    if len(source) > MAX_EXPRESSION_LENGTH:
        reason = f"expression is too long: {len(source)} characters, the limit is "
        raise ExpressionError(source, reason + str(MAX_EXPRESSION_LENGTH))
    ast = _parse(source)
    _check_names(source, ast)
    return CompiledExpression(source, ast, _depth(ast))


def validate_expression(source: str) -> None:
    """Raise ExpressionError unless ``source`` compiles."""
    compile_expression(source)


def evaluate_bool(
    source: str,
    variables: Mapping[str, Any],
    *,
    max_cost: int | None = DEFAULT_MAX_COST,
    deadline: float | None = None,
) -> bool:
    """True only if the expression yields boolean true; any error (even syntax) gives False,
    except ExpressionBudgetExceeded, which is raised: the answer is unknown, not "no"."""
    try:
        compiled = compile_expression(source)
    except ExpressionError:
        return False
    try:
        return compiled.evaluate(variables, max_cost=max_cost, deadline=deadline) is True
    except ExpressionBudgetExceeded:
        raise
    except ExpressionError:
        return False


def evaluate_value(
    source: str,
    variables: Mapping[str, Any],
    *,
    max_cost: int | None = DEFAULT_MAX_COST,
    deadline: float | None = None,
) -> Any:
    """The expression's value as plain Python; raise ExpressionError when it fails."""
    return compile_expression(source).evaluate(variables, max_cost=max_cost, deadline=deadline)


# --- pause helpers ---

_NOT_LITERAL = object()
_SELECTIONS = frozenset({"ident", "member_dot", "member_index"})


def _unwrap(node: Any) -> Any:
    # Parentheses are the only one-child nodes left after compiling that do nothing; ``[x]``
    # and ``f(x)`` have one child too, but are not ``x``.
    while isinstance(node, lark.Tree) and node.data == "paren_expr":
        node = node.children[0]
    return node


def _literal(node: Any) -> Any:
    node = _unwrap(node)
    if not isinstance(node, lark.Tree) or node.data != "literal":
        return _NOT_LITERAL
    if getattr(node.children[0], "type", None) == "BYTES_LIT":
        return _NOT_LITERAL  # JSON events never hold bytes
    return literal_value(node)


def _path(node: Any, root: str) -> list[Any] | None:
    """The keys of a plain selection chain ``root.a["b"][0]``, or None for anything else."""
    node = _unwrap(node)
    if not isinstance(node, lark.Tree):
        return None
    if node.data == "ident":
        return [] if node.children[0] == root else None
    if node.data not in ("member_dot", "member_index"):
        return None
    base = _path(node.children[0], root)
    key = str(node.children[1]) if node.data == "member_dot" else _literal(node.children[1])
    if base is None or isinstance(key, bool) or not isinstance(key, str | int):
        return None
    return [*base, key]


def _cel_literal(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int) and INT64[0] <= value <= INT64[1]:
        return str(value)
    if isinstance(value, int | float):
        number = float(value)
        return repr(number) if math.isfinite(number) else f'double("{number}")'
    if isinstance(value, Mapping):
        items = (f"{_cel_literal(str(k))}: {_cel_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_cel_literal(v) for v in value) + "]"
    # JSON's string escapes are all valid in CEL; raw non-ASCII avoids \u surrogate pairs.
    return json.dumps(str(value), ensure_ascii=False)


def _resolve(root: Any, keys: list[Any]) -> tuple[bool, Any]:
    value = root
    for key in keys:
        in_map = isinstance(value, Mapping) and isinstance(key, str) and key in value
        in_list = isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value)
        if not (in_map or in_list):
            return False, None
        value = value[key]
    return True, value


def _is_has(node: lark.Tree[Any]) -> bool:
    args = node.children[1] if node.data == "ident_arg" and len(node.children) == 2 else None
    return node.children[0] == "has" and isinstance(args, lark.Tree) and len(args.children) == 1


def interpolate_event(source: str, event: Mapping[str, Any]) -> str:
    """Replace each ``event.<path>`` in ``source`` by its literal value taken from ``event``.

    Raises ``ExpressionError`` when ``source`` is invalid, or when the result is not an
    expression this module can evaluate (the event's values made it too long or too deep):
    a wait that could never match must fail clearly instead."""
    try:
        result = _interpolated(source, event)
    except RecursionError:
        raise ExpressionError(source, "the event's values are nested too deeply") from None
    try:
        compile_expression(result)
    except ExpressionError as exc:
        reason = f"with the event's values filled in, {exc.reason}"
        raise ExpressionError(source, reason) from None
    return result


def _interpolated(source: str, event: Mapping[str, Any]) -> str:
    spans: list[tuple[int, int, str]] = []
    pending: list[Any] = [compile_expression(source).ast]
    while pending:
        node = pending.pop()
        if node.data in _SELECTIONS and (keys := _path(node, "event")) is not None:
            text = _cel_literal(_resolve(event, keys)[1])
        elif _is_has(node):
            # has(event.x) must test presence now: has(<literal>) would always be true.
            keys = _path(node.children[1].children[0], "event")
            if not keys:
                pending.append(node.children[1])
                continue
            text = "true" if _resolve(event, keys)[0] else "false"
        else:
            pending.extend(c for c in node.children if isinstance(c, lark.Tree))
            continue
        spans.append((node.meta.start_pos, node.meta.end_pos, text))
    out, pos = [], 0
    for start, end, text in sorted(spans):
        out += [source[pos:start], text]
        pos = end
    return "".join([*out, source[pos:]])


def extract_match_key(source: str) -> tuple[str, Any] | None:
    """``(path, literal)`` from a required ``async.<path> == <literal>`` conjunct, else None."""
    try:
        pending: list[Any] = [compile_expression(source).ast]
    except ExpressionError:
        return None
    while pending:
        # Only "&&" chains are descended: under "||", "!" or "?:" no conjunct is required.
        node = _unwrap(pending.pop(0))
        if node.data == "conditionaland":
            pending[:0] = node.children
        elif node.data == "relation" and node.children[0].data == "relation_eq":
            left, right = node.children[0].children[0], node.children[1]
            for side, other in ((left, right), (right, left)):
                keys, value = _path(side, "async"), _literal(other)
                dotted = all(isinstance(k, str) and "." not in k for k in keys or [None])
                if dotted and keys and value is not _NOT_LITERAL:
                    return ".".join(keys), value
    return None


def match_key_value(value: Any) -> str:
    """Canonical text of a value for equality indexing: 1 and 1.0 agree, "1" and 1 differ."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"b:{'true' if value else 'false'}"
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        value = float(value)  # evaluation sees such integers as doubles too
    if isinstance(value, int | float):
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return f"n:{value!r}"
        return f"n:{int(value)}"
    if isinstance(value, str):
        return f"s:{value}"
    return "j:" + json.dumps(_normalised(value), sort_keys=True, separators=(",", ":"))


def _normalised(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _normalised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalised(v) for v in value]
    return value if isinstance(value, str | int | float | bool | None) else str(value)


def lookup_path(obj: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` inside ``obj``; None when any step is absent."""
    return _resolve(obj, path.split(".") if path else [])[1]
