"""CEL expressions in Inngest's dialect: this module owns parsing, validating and evaluating
trigger ``expression``s, waitForEvent/cancelOn ``if``s and flow-control key expressions, plus the
pause helpers built on them (``interpolate_event``, ``extract_match_key``, ``match_key_value``).
It adapts cel-python, whose strict CEL semantics differ from Inngest's: a custom evaluator makes
missing map keys (and field selection on null) evaluate to null except inside ``has()``, and
overridden operators make ``==``/``!=``/``in`` compare numbers across int/double while treating
other type mismatches as unequal (``true == 1`` is false), let ordering and arithmetic mix int and
double, and let ``+`` join a string with any value (rendered like JSON; whole doubles lose their
``.0``). Known differences from Inngest's cel-go: there is no type checker, so compilation rejects
only syntax errors and undeclared variables/functions (macro variables count as declared across the
whole expression) and type errors surface at evaluation; ``now()`` is not provided; integers beyond
int64 become doubles; interpolation does not notice a macro variable named ``event`` shadowing the
real one; evaluation recurses in Python, so extreme nesting (about 100 parentheses or 200
chained operators) fails as an evaluation error.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import operator
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import lark
from celpy import celtypes
from celpy.celparser import CELParseError, CELParser
from celpy.evaluation import Activation, CELEvalError, Evaluator, Result, base_functions

__all__ = [
    "VARIABLES", "CompiledExpression", "ExpressionError", "compile_expression", "evaluate_bool",
    "evaluate_value", "extract_match_key", "interpolate_event", "lookup_path", "match_key_value",
    "validate_expression",
]  # fmt: skip

VARIABLES = frozenset({"event", "async", "vars"})
_MACROS = frozenset({"has", "dyn", "all", "exists", "exists_one", "map", "filter"})
_INT64 = (-(2**63), 2**63 - 1)


class ExpressionError(ValueError):
    """An expression that does not compile, or (for ``evaluate_value``) did not evaluate."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"{reason} in expression {expression!r}")
        self.expression = expression
        self.reason = reason


# --- values crossing the boundary ---


_SCALARS: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (bool, celtypes.BoolType),  # before int: bool subclasses int
    (int, celtypes.IntType),
    (float, celtypes.DoubleType),
    (str, celtypes.StringType),
    (bytes, celtypes.BytesType),
    (datetime, celtypes.TimestampType),
    (timedelta, celtypes.DurationType),
)


def _to_cel(value: Any) -> Any:
    if value is None or isinstance(value, CELEvalError):
        return value
    if isinstance(value, Mapping):
        return celtypes.MapType({_to_cel(k): _to_cel(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return celtypes.ListType([_to_cel(v) for v in value])
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        return celtypes.DoubleType(value)  # as cel-go's JSON decoding would; IntType raises
    for python_type, cel_type in _SCALARS:
        if isinstance(value, python_type):
            return cel_type(value)
    raise TypeError(f"cannot pass a {type(value).__name__} to an expression")


def _to_plain(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {_to_plain(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, datetime):  # drop the pendulum timezone celpy attaches
        return datetime.fromisoformat(value.isoformat())
    if isinstance(value, timedelta):
        return timedelta(value.days, value.seconds, value.microseconds)
    for python_type, _ in _SCALARS[:5]:
        if isinstance(value, python_type):
            return python_type(value)
    return value if value is None else str(value)  # type values such as ``type(1)``


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | celtypes.BoolType):  # before int: BoolType subclasses int
        return "bool"
    if isinstance(value, int | float):
        return "num"
    for kind, cls in (("str", str), ("bytes", bytes), ("list", list), ("map", dict)):
        if isinstance(value, cls):
            return kind
    return "other"


def _number(value: Any) -> int | float:
    return int(value) if isinstance(value, int) else float(value)


def _render(value: Any) -> str:
    """The text ``+`` appends for a non-string operand."""
    plain = _to_plain(value)
    if isinstance(plain, float) and math.isfinite(plain) and plain.is_integer():
        return str(int(plain))
    return plain if isinstance(plain, str) else json.dumps(plain, default=str)


# --- loosely typed operators ---


def _loose_equal(a: Any, b: Any) -> bool:
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == "num":
        return _number(a) == _number(b)
    if kind == "list":
        return len(a) == len(b) and all(_loose_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind == "map":
        return len(a) == len(b) and all(k in b and _loose_equal(v, b[k]) for k, v in a.items())
    try:
        return bool(a == b)
    except TypeError:
        return False


def _propagating(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def wrapper(a: Any, b: Any) -> Any:
        if isinstance(a, CELEvalError):
            return a
        return b if isinstance(b, CELEvalError) else fn(a, b)

    return wrapper


def _ordering(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        if _kind(a) == _kind(b) == "num":
            return celtypes.BoolType(op(_number(a), _number(b)))
        # A TypeError here becomes a CEL "no matching overload" error in the evaluator.
        return celtypes.BoolType(op(a, b))

    return _propagating(compare)


def _arithmetic(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        mixed = _kind(a) == _kind(b) == "num" and isinstance(a, float) != isinstance(b, float)
        if mixed:
            return op(celtypes.DoubleType(a), celtypes.DoubleType(b))
        if op is operator.add and isinstance(a, str) != isinstance(b, str):
            text = a if isinstance(a, str) else _render(a)
            return celtypes.StringType(text + (b if isinstance(b, str) else _render(b)))
        return op(a, b)

    return _propagating(apply)


def _index(container: Any, key: Any) -> Any:
    if container is None:
        return None
    if isinstance(container, celtypes.MapType) and key not in container:
        return None
    return container[key]


def _contains(item: Any, container: Any) -> Any:
    if isinstance(container, list):
        return celtypes.BoolType(any(_loose_equal(item, c) for c in container))
    return base_functions["_in_"](item, container)


def _string_fn(name: str, fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if isinstance(value, CELEvalError):
            return value
        try:
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {_kind(value)}")
            return fn(str(value))
        except (TypeError, ValueError) as exc:  # bad JSON, bad base64 and invalid UTF-8 too
            return CELEvalError(f"{name}(): {exc}", type(exc), exc.args)

    return apply


_FUNCTIONS: dict[str, Any] = {
    "_==_": _propagating(lambda a, b: celtypes.BoolType(_loose_equal(a, b))),
    "_!=_": _propagating(lambda a, b: celtypes.BoolType(not _loose_equal(a, b))),
    "_<_": _ordering(operator.lt),
    "_<=_": _ordering(operator.le),
    "_>_": _ordering(operator.gt),
    "_>=_": _ordering(operator.ge),
    "_+_": _arithmetic(operator.add),
    "_-_": _arithmetic(operator.sub),
    "_*_": _arithmetic(operator.mul),
    "_/_": _arithmetic(operator.truediv),
    "_in_": _propagating(_contains),
    "_[_]": _propagating(_index),
    "lowercase": _string_fn("lowercase", lambda s: celtypes.StringType(s.lower())),
    "uppercase": _string_fn("uppercase", lambda s: celtypes.StringType(s.upper())),
    "json_parse": _string_fn("json_parse", lambda s: _to_cel(json.loads(s))),
    "b64decode": _string_fn(
        "b64decode", lambda s: celtypes.StringType(base64.b64decode(s, validate=True).decode())
    ),
}
_KNOWN_NAMES = VARIABLES | _MACROS | set(_FUNCTIONS) | set(base_functions)


class _LenientEvaluator(Evaluator):  # type: ignore[misc]  # celpy ships no types
    """Inngest's missing-attribute rule: ``a.b`` is null when ``a`` is null or lacks ``b``."""

    strict = False  # set while evaluating has(), whose whole point is to detect absence

    def sub_evaluator(self, ast: lark.Tree[Any]) -> Evaluator:
        nested = _LenientEvaluator(ast, activation=self.activation)
        nested.strict = self.strict
        return nested

    def member_dot(self, tree: lark.Tree[Any]) -> Result:
        member_tree, name = tree.children
        member = self.visit(member_tree)
        if isinstance(member, CELEvalError):
            return member
        if isinstance(member, celtypes.MapType):
            if str(name) in member:
                found: Result = member[str(name)]
                return found
            if self.strict:
                return CELEvalError(f"no such key: {str(name)!r}", KeyError, None, tree=tree)
            return None
        if member is None and not self.strict:
            return None
        fallback: Result = super().member_dot(tree)  # packages, type errors: rare, re-visits
        return fallback

    def macro_has_eval(self, exprlist: lark.Tree[Any]) -> celtypes.BoolType:
        previous, self.strict = self.strict, True
        try:
            return super().macro_has_eval(exprlist)
        finally:
            self.strict = previous


# --- compiling ---


@dataclass(frozen=True, eq=False)
class CompiledExpression:
    """A parsed, name-checked expression; immutable and safe to share across threads."""

    source: str
    ast: lark.Tree[Any]

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Evaluate with ``event``/``async``/``vars`` (absent ones are null); plain values out."""
        try:
            context = {name: None for name in VARIABLES}
            context.update((name, _to_cel(value)) for name, value in variables.items())
            evaluator = _LenientEvaluator(self.ast, Activation(vars=context, functions=_FUNCTIONS))
            result = evaluator.visit(self.ast)
        except RecursionError as exc:
            raise ExpressionError(self.source, "expression is nested too deeply") from exc
        except Exception as exc:  # cel-python reports some failures as bare Python exceptions
            raise ExpressionError(self.source, f"evaluation failed: {exc}") from exc
        if isinstance(result, CELEvalError):
            reason = str(result.args[0]) if result.args else "evaluation failed"
            # Undeclared-reference errors embed a dump of the whole activation.
            raise ExpressionError(self.source, reason.split(" (in activation", 1)[0])
        return _to_plain(result)


_parse_lock = threading.Lock()
_FORWARDING = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary"}
)


def _skip_forwarding(node: Any) -> Any:
    while isinstance(node, lark.Tree) and node.data in _FORWARDING and len(node.children) == 1:
        if not isinstance(node.children[0], lark.Tree):
            break
        node = node.children[0]
    return node


def _flatten(ast: lark.Tree[Any]) -> lark.Tree[Any]:
    # Each operand sits under ~8 one-child rules whose evaluator methods only pass the value up;
    # dropping them halves evaluation time and the Python recursion depth deep nesting needs.
    for node in list(ast.iter_subtrees()):
        node.children = [_skip_forwarding(child) for child in node.children]
    flat: lark.Tree[Any] = _skip_forwarding(ast)
    return flat


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


@functools.lru_cache(maxsize=2048)
def compile_expression(source: str) -> CompiledExpression:
    """Parse ``source`` once (results are cached); raise ExpressionError if it is invalid."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(str(source), "expression is empty")
    try:
        with _parse_lock:  # CELParser keeps the text being parsed on a shared instance
            ast = _flatten(CELParser().parse(source))
        _check_names(source, ast)
    except CELParseError as exc:
        where = f"line {exc.line}, column {exc.column}" if exc.line else "end of input"
        raise ExpressionError(source, f"syntax error at {where}") from exc
    except RecursionError as exc:
        raise ExpressionError(source, "expression is nested too deeply") from exc
    return CompiledExpression(source, ast)


def validate_expression(source: str) -> None:
    """Raise ExpressionError unless ``source`` compiles."""
    compile_expression(source)


def evaluate_bool(source: str, variables: Mapping[str, Any]) -> bool:
    """True only if the expression yields boolean true; any error (even syntax) gives False."""
    try:
        return compile_expression(source).evaluate(variables) is True
    except ExpressionError:
        return False


def evaluate_value(source: str, variables: Mapping[str, Any]) -> Any:
    """The expression's value as plain Python; raise ExpressionError when it fails."""
    return compile_expression(source).evaluate(variables)


# --- pause helpers ---

_NOT_LITERAL = object()


def _unwrap(node: Any) -> Any:
    # The grammar wraps every operand in a chain of one-child rules (and parentheses).
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        if not isinstance(node.children[0], lark.Tree):
            break
        node = node.children[0]
    return node


def _literal(node: Any) -> Any:
    node = _unwrap(node)
    if not isinstance(node, lark.Tree) or node.data != "literal":
        return _NOT_LITERAL
    if getattr(node.children[0], "type", None) == "BYTES_LIT":
        return _NOT_LITERAL  # JSON events never hold bytes
    return _to_plain(_LenientEvaluator(node, Activation()).visit(node))


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
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
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


def interpolate_event(source: str, event: Mapping[str, Any]) -> str:
    """Replace each ``event.<path>`` in ``source`` by its literal value taken from ``event``."""
    spans: list[tuple[int, int, str]] = []
    pending: list[Any] = [compile_expression(source).ast]
    while pending:
        node = pending.pop()
        if node.data == "member" and (keys := _path(node, "event")) is not None:
            text = _cel_literal(_resolve(event, keys)[1])
        elif node.data == "ident_arg" and node.children[0] == "has" and len(node.children) == 2:
            # has(event.x) must test presence now: has(<literal>) would always be true.
            keys = _path(node.children[1], "event")
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
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
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
