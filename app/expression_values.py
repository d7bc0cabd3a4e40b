"""Values in Inngest-dialect CEL: this module owns conversion between plain Python data and
cel-python values (charged to the running evaluation's budget, with an explicit stack rather than
recursion, since event data may nest deeper than Python allows) and the dialect's loosely typed
operators and extra functions, ``FUNCTIONS``.

Inngest's operators differ from strict CEL: ``==``/``!=``/``in`` compare numbers across int and
double and call other type mismatches unequal (``true == 1`` is false), ordering and arithmetic mix
int and double, and ``+`` joins a string with any value (rendered like JSON; whole doubles lose
their ``.0``).  Operations whose work grows with their operands charge for it: ``==`` and ``in``
per element, ``+`` per character or element, functions per character of text they scan.
"""

from __future__ import annotations

import base64
import json
import math
import operator
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from celpy import celtypes
from celpy.evaluation import CELEvalError, base_functions

from app.expression_budget import charge, charge_text, text_units

__all__ = [
    "ALL_FUNCTIONS", "FUNCTIONS", "INT64", "cel_bool", "cel_int", "kind", "loose_equal", "to_cel",
    "to_plain",
]  # fmt: skip

INT64 = (-(2**63), 2**63 - 1)


# --- plain Python in ---


def _int(value: int) -> Any:
    if INT64[0] <= value <= INT64[1]:
        return int.__new__(celtypes.IntType, value)
    return celtypes.DoubleType(value)  # as cel-go's JSON decoding would; IntType raises


# The types' own constructors re-check their input in Python; these are the C paths, by exact
# type first (JSON only ever gives these), then by isinstance for subclasses and the rest.
_EXACT: dict[type, Callable[[Any], Any]] = {
    str: lambda v: str.__new__(celtypes.StringType, v),
    int: _int,
    float: lambda v: float.__new__(celtypes.DoubleType, v),
    bool: lambda v: int.__new__(celtypes.BoolType, v),
    type(None): lambda v: None,
}
_BY_CLASS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    ((CELEvalError, celtypes.BoolType), lambda v: v),
    (bool, _EXACT[bool]),  # before int: bool subclasses int
    (int, _int),
    (float, _EXACT[float]),
    (str, _EXACT[str]),
    (bytes, celtypes.BytesType),
    (datetime, celtypes.TimestampType),
    (timedelta, celtypes.DurationType),
)


def _scalar(value: Any) -> Any:
    exact = _EXACT.get(type(value))
    if exact is not None:
        return exact(value)
    for cls, convert in _BY_CLASS:
        if isinstance(value, cls):
            return convert(value)
    raise TypeError(f"cannot pass a {type(value).__name__} to an expression")


def _shell(value: Any) -> Any:
    """An empty CEL container to fill with ``value``'s converted items, or None for a scalar."""
    cls = type(value)
    if cls in _EXACT:
        return None
    if cls is dict or isinstance(value, Mapping):
        return celtypes.MapType()
    if cls is list or isinstance(value, list | tuple):
        return celtypes.ListType()
    return None


def to_cel(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """The CEL value of plain ``value``: a unit per value, and per 100 characters of text.

    ``memo`` maps ``id()`` of containers already converted to their CEL value; pass one only for
    data that outlives it (the caller's variables during one evaluation).
    """
    out = _shell(value)
    if out is None:
        charge(1 + (text_units(value) if isinstance(value, str | bytes) else 0))
        return _scalar(value)
    if memo is not None and (known := memo.get(id(value))) is not None:
        charge(1)
        return known
    pending = [(value, out)]
    while pending:
        raw, shell = pending.pop()
        charge(1 + len(raw))  # before the work: an oversized container is refused at once
        if memo is not None:
            memo[id(raw)] = shell
        text = 0
        is_map = isinstance(shell, dict)
        for key, item in raw.items() if is_map else enumerate(raw):
            child = _shell(item)
            if child is None:
                child = _scalar(item)
                text += text_units(item) if isinstance(item, str | bytes) else 0
            else:
                pending.append((item, child))
            if is_map:
                dict.__setitem__(shell, _scalar(key), child)
            else:
                shell.append(child)
        charge(text)
    return out


# --- plain Python out ---

_PLAIN: tuple[type[Any], ...] = (bool, int, float, str, bytes)  # bool first: it subclasses int


def to_plain(value: Any) -> Any:
    """A CEL result as plain Python: bool, int, float, str, bytes, list, dict, datetime..."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, datetime):  # drop the pendulum timezone celpy attaches
        return datetime.fromisoformat(value.isoformat())
    if isinstance(value, timedelta):
        return timedelta(value.days, value.seconds, value.microseconds)
    for python_type in _PLAIN:
        if isinstance(value, python_type):
            return python_type(value)
    return value if value is None else str(value)  # type values such as ``type(1)``


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | celtypes.BoolType):  # before int: BoolType subclasses int
        return "bool"
    if isinstance(value, int | float):
        return "num"
    for name, cls in (("str", str), ("bytes", bytes), ("list", list), ("map", dict)):
        if isinstance(value, cls):
            return name
    return "other"


def _number(value: Any) -> int | float:
    return int(value) if isinstance(value, int) else float(value)


def _render(value: Any) -> str:
    """The text ``+`` appends for a non-string operand."""
    if type(value) is celtypes.IntType:
        return str(int(value))
    plain = to_plain(value)
    if isinstance(plain, float) and math.isfinite(plain) and plain.is_integer():
        return str(int(plain))
    text = plain if isinstance(plain, str) else json.dumps(plain, default=str)
    charge_text(text)
    return text


# --- loosely typed operators ---

_TRUE, _FALSE = int.__new__(celtypes.BoolType, 1), int.__new__(celtypes.BoolType, 0)


def cel_bool(value: object) -> Any:
    return _TRUE if value else _FALSE


def loose_equal(a: Any, b: Any) -> bool:
    """Inngest's ``==``: numbers across int/double, other kinds never equal each other."""
    pending = [(a, b)]
    while pending:  # an explicit stack, for the same reason as to_cel's
        a, b = pending.pop()
        kind_a = kind(a)
        if kind_a != kind(b):
            return False
        if kind_a == "num":
            if _number(a) != _number(b):
                return False
        elif kind_a in ("list", "map"):
            if len(a) != len(b):
                return False
            charge(len(a))
            if kind_a == "list":
                pending.extend(zip(a, b, strict=True))
            elif any(k not in b for k in a):
                return False
            else:
                pending.extend((v, b[k]) for k, v in a.items())
        else:
            charge_text(a)
            try:
                if a != b:
                    return False
            except TypeError:
                return False
    return True


def _propagating(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        error = next((a for a in args if isinstance(a, CELEvalError)), None)
        return error if error is not None else fn(*args)

    return wrapper


def _ordering(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        if kind(a) == kind(b) == "num":
            return cel_bool(op(_number(a), _number(b)))
        charge_text(a)
        # A TypeError here becomes a CEL "no matching overload" error in the evaluator.
        return cel_bool(op(a, b))

    return _propagating(compare)


def cel_int(value: int) -> Any:
    """An IntType, or ValueError as celpy raises for int64 overflow (CEL's overflow error)."""
    if not INT64[0] <= value <= INT64[1]:
        raise ValueError("overflow")
    return int.__new__(celtypes.IntType, value)


_INT_OPS = (operator.add, operator.sub, operator.mul)


def _arithmetic(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if type(a) is type(b) is celtypes.IntType and op in _INT_OPS:
            return cel_int(op(int(a), int(b)))  # celpy's own int64 checks run in Python
        kinds = (kind(a), kind(b))
        if kinds == ("num", "num") and isinstance(a, float) != isinstance(b, float):
            return op(celtypes.DoubleType(a), celtypes.DoubleType(b))
        if op is operator.add and isinstance(a, str) != isinstance(b, str):
            text = a if isinstance(a, str) else _render(a)
            return celtypes.StringType(text + (b if isinstance(b, str) else _render(b)))
        if op is operator.add and kinds[0] in ("str", "bytes", "list"):
            charge(len(a) + len(b) if kinds[0] == "list" else text_units(a) + text_units(b))
        elif op in (operator.mul, operator.mod) and kinds != ("num", "num"):
            # Python would repeat a string or list (``'x' * 10**9``); CEL has no such overload.
            raise TypeError("no such overload")
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
        charge(len(container))
        return cel_bool(any(loose_equal(item, c) for c in container))
    if isinstance(container, dict):
        return cel_bool(item in container)  # a hash lookup, not celpy's scan of keys
    raise TypeError("no such overload")


def _contains_method(container: Any, item: Any) -> Any:
    if isinstance(container, str):
        return cel_bool(isinstance(item, str) and item in container)
    return _contains(item, container)


def _string_fn(name: str, fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if isinstance(value, CELEvalError):
            return value
        try:
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {kind(value)}")
            return fn(str(value))
        except (TypeError, ValueError) as exc:  # bad JSON, bad base64 and invalid UTF-8 too
            return CELEvalError(f"{name}(): {exc}", type(exc), exc.args)

    return apply


FUNCTIONS: dict[str, Any] = {
    "_==_": _propagating(lambda a, b: cel_bool(loose_equal(a, b))),
    "_!=_": _propagating(lambda a, b: cel_bool(not loose_equal(a, b))),
    "_<_": _ordering(operator.lt),
    "_<=_": _ordering(operator.le),
    "_>_": _ordering(operator.gt),
    "_>=_": _ordering(operator.ge),
    "_+_": _arithmetic(operator.add),
    "_-_": _arithmetic(operator.sub),
    "_*_": _arithmetic(operator.mul),
    "_/_": _arithmetic(operator.truediv),
    "_%_": _arithmetic(operator.mod),
    "_in_": _propagating(_contains),
    "_[_]": _propagating(_index),
    "contains": _propagating(_contains_method),
    "lowercase": _string_fn("lowercase", lambda s: celtypes.StringType(s.lower())),
    "uppercase": _string_fn("uppercase", lambda s: celtypes.StringType(s.upper())),
    "json_parse": _string_fn("json_parse", lambda s: to_cel(json.loads(s))),
    "b64decode": _string_fn(
        "b64decode", lambda s: celtypes.StringType(base64.b64decode(s, validate=True).decode())
    ),
}
# cel-python's own functions the dialect keeps (size, startsWith, matches, int, timestamp...).
ALL_FUNCTIONS: dict[str, Any] = {**base_functions, **FUNCTIONS}
