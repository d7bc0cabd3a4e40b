"""The metered evaluator of Inngest-dialect CEL: this module owns walking a compiled syntax tree
over the caller's variables (``app.expressions`` owns parsing and the public API,
``app.expression_values`` the values and operators).

It is cel-python's evaluator with four changes.  Every node and comprehension iteration is
charged to the evaluation's ``Budget``.  The caller's variables are never converted wholesale: a
selection chain such as ``event.data.user.id`` walks the plain Python data and converts only the
value it ends on; ``has``, ``size``, ``in`` and the comprehension macros read plain lists and maps
in place, converting one element at a time; a container converted in full is remembered for the
rest of the evaluation.  Missing map keys (and selection on null) give null except inside
``has()``.  And recursion is lean and bounded by the tree: at most about two Python frames per
tree level (measured: 2.0 for parentheses, ``&&``, ternaries, macros and calls; 1.5 for list and
map literals; 1.05 for ``+`` and ``==`` chains), all of them Python frames that take no C stack,
and value walks (conversion, ``==``, ``in``) use explicit stacks.  An expression within
``app.expressions.MAX_NESTING_DEPTH`` (200) thus needs at most ~410 frames whatever the event
holds, leaving more than half of Python's default recursion limit (1000) to the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lark
from celpy import celtypes
from celpy.evaluation import Activation, CELEvalError, Evaluator, Result

from app.expression_budget import CALL_COST, Budget, charge, charge_text
from app.expression_values import (
    ALL_FUNCTIONS,
    FUNCTIONS,
    cel_bool,
    cel_int,
    kind,
    loose_equal,
    to_cel,
    to_plain,
)

__all__ = ["MeteredEvaluator", "literal_value"]

_BINARY = {
    "relation_lt": "_<_", "relation_le": "_<=_", "relation_gt": "_>_", "relation_ge": "_>=_",
    "relation_eq": "_==_", "relation_ne": "_!=_", "relation_in": "_in_",
    "addition_add": "_+_", "addition_sub": "_-_",
    "multiplication_mul": "_*_", "multiplication_div": "_/_", "multiplication_mod": "_%_",
}  # fmt: skip
_COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_SELECTIONS = frozenset({"ident", "member_dot", "member_index"})
_ACTIVATION: list[Activation] = []  # built on first use: nothing runs at import
_MISSING = object()
_SIZE = lark.Token("IDENT", "size")


class Raw:
    """A part of the caller's variables not converted yet (only selections pass it along)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _activation() -> Activation:
    # Shared by every evaluation: it holds only functions, and nothing writes to it.
    if not _ACTIVATION:
        _ACTIVATION.append(Activation(functions=FUNCTIONS))
    return _ACTIVATION[0]


def _charge_arguments(values: list[Any]) -> None:
    # Functions scan the text they get (lowercase, matches, int()) and may copy or walk a
    # container (list(), contains()); size() of an event part is answered before this.
    charge(sum(len(v) if isinstance(v, list | dict) else 0 for v in values))
    charge_text(*values)


def _error(message: str, exc: BaseException | None = None, tree: Any = None) -> CELEvalError:
    cause = exc if exc is not None else TypeError(message)
    error = CELEvalError(message, type(cause), cause.args, tree=tree)
    error.__cause__ = cause
    return error


class MeteredEvaluator(Evaluator):  # type: ignore[misc]  # celpy ships no types
    """cel-python's evaluator, metered, lazy over the caller's data and lenient on selection.

    ``literals`` caches literal nodes' values (keyed by node id) across evaluations of one tree.
    """

    def __init__(
        self,
        ast: lark.Tree[Any],
        roots: Mapping[str, Any],
        budget: Budget,
        literals: dict[int, Any] | None = None,
    ) -> None:
        super().__init__(ast, activation=_activation())
        self.roots = roots  # the caller's plain variables: event, async, vars
        self.budget = budget
        self.literals = {} if literals is None else literals
        self.scope: dict[str, Any] = {}  # comprehension variables in scope
        self.memo: dict[int, Any] = {}  # containers of ``roots`` converted so far
        self.strict = False  # set while evaluating has(), whose point is to detect absence

    # -- dispatch: a unit per node, no lark indirection (fewer frames per level) --

    def visit(self, tree: lark.Tree[Any]) -> Result:
        self.budget.charge(1)
        return getattr(self, tree.data)(tree)

    def visit_children(self, tree: lark.Tree[Any]) -> list[Result]:
        values = []
        for child in tree.children:  # a loop, not a comprehension: one frame fewer per level
            values.append(self.visit(child) if isinstance(child, lark.Tree) else child)
        return values

    def _apply(
        self, name: str, tree: lark.Tree[Any], *args: Any, convert: Callable[..., Any] | None = None
    ) -> Result:
        """Call function ``name`` (or ``convert``), its Python exceptions as CEL error values."""
        try:
            result: Result = (convert or ALL_FUNCTIONS[name])(*args)
        except ZeroDivisionError as exc:
            return _error("modulus or divide by zero", exc, tree)
        except (ValueError, OverflowError) as exc:
            return _error("return error for overflow", exc, tree)
        except KeyError as exc:
            return _error("no such key", exc, tree)
        except IndexError as exc:
            return _error("invalid_argument", exc, tree)
        except TypeError as exc:
            types = ", ".join(kind(a) for a in args)
            return _error(f"found no matching overload for {name} applied to ({types})", exc, tree)
        return result

    def literal(self, tree: lark.Tree[Any]) -> Result:
        value = self.literals.get(id(tree), _MISSING)
        if value is _MISSING:
            value = super().literal(tree)  # parsing the token anew costs microseconds
            if not isinstance(value, CELEvalError):
                self.literals[id(tree)] = value
        return value

    # -- operators --

    def conditionalor(self, tree: lark.Tree[Any]) -> Result:
        left = self.visit(tree.children[0])
        if isinstance(left, celtypes.BoolType) and left:
            return left  # CEL's true || x is true whatever x is, so x need not run
        return self._apply("_||_", tree, left, self.visit(tree.children[1]))

    def conditionaland(self, tree: lark.Tree[Any]) -> Result:
        left = self.visit(tree.children[0])
        if isinstance(left, celtypes.BoolType) and not left:
            return left
        return self._apply("_&&_", tree, left, self.visit(tree.children[1]))

    def relation(self, tree: lark.Tree[Any]) -> Result:
        op_tree, right_tree = tree.children
        left = self.visit(op_tree.children[0])
        if op_tree.data == "relation_in" and right_tree.data in _SELECTIONS:
            right = self._select(right_tree)
            if isinstance(right, Raw):
                return self._raw_contains(left, right.value, tree)
            return self._apply("_in_", tree, left, right)
        return self._apply(_BINARY[op_tree.data], tree, left, self.visit(right_tree))

    addition = multiplication = relation

    def unary(self, tree: lark.Tree[Any]) -> Result:
        op_tree, operand = tree.children
        value = self.visit(operand)
        if isinstance(value, CELEvalError):
            return value
        if op_tree.data == "unary_not":
            return self._apply("!_", tree, value)
        if type(value) is celtypes.IntType:  # celpy's own int64 checks run in Python
            return self._apply("-_", tree, -int(value), convert=cel_int)
        return self._apply("-_", tree, value)

    # -- selection: plain data stays plain until a value is needed --

    def _top(self, value: Any) -> Any:
        return to_cel(value.value, self.memo) if isinstance(value, Raw) else value

    def _select(self, tree: lark.Tree[Any]) -> Any:
        """A selection chain's value, leaving the caller's plain data as ``Raw``."""
        data = tree.data
        if data not in _SELECTIONS:
            return self.visit(tree)
        self.budget.charge(1)
        if data == "member_dot":
            return self._field(self._select(tree.children[0]), str(tree.children[1]), tree)
        if data == "member_index":
            base = self._select(tree.children[0])
            return self._item(base, self.visit(tree.children[1]), tree)
        name = str(tree.children[0])
        if name in self.scope:
            return self.scope[name]
        return Raw(self.roots[name]) if name in self.roots else self.ident(tree)

    def _field(self, base: Any, name: str, tree: lark.Tree[Any]) -> Any:
        value = base.value if isinstance(base, Raw) else base
        if isinstance(value, Mapping):
            if name in value:
                return Raw(value[name]) if isinstance(base, Raw) else value[name]
            if self.strict:
                return _error(f"no such key: {name!r}", KeyError(name), tree)
            return None
        if isinstance(value, CELEvalError) or (value is None and not self.strict):
            return value
        return _error(f"a {kind(value)} does not support field selection", tree=tree)

    def _item(self, base: Any, key: Any, tree: lark.Tree[Any]) -> Any:
        if isinstance(key, CELEvalError):
            return key
        if isinstance(base, Raw):
            value = base.value
            if isinstance(value, Mapping):
                return Raw(value[key]) if isinstance(key, str) and key in value else None
            if isinstance(value, list | tuple) and kind(key) == "num" and isinstance(key, int):
                if -len(value) <= key < len(value):
                    return Raw(value[key])
                return _error("invalid_argument", IndexError(int(key)), tree)
            base = self._top(base)
        return self._apply("_[_]", tree, base, key)

    def ident(self, tree: lark.Tree[Any]) -> Result:
        name = str(tree.children[0])
        if name in self.scope:
            return self.scope[name]
        if name in self.roots:
            return to_cel(self.roots[name], self.memo)
        if name in ALL_FUNCTIONS:  # types such as ``string`` in ``type(x) == string``
            found: Result = ALL_FUNCTIONS[name]
            return found
        return _error(f"undeclared reference to {name!r}", KeyError(name), tree)

    def ident_value(self, name: str, root_scope: bool = False) -> Result:
        if name in self.roots:  # ``.event``: a leading dot resolves in the root scope
            return to_cel(self.roots[name], self.memo)
        return super().ident_value(name, root_scope)

    def member_dot(self, tree: lark.Tree[Any]) -> Result:
        return self._top(self._field(self._select(tree.children[0]), str(tree.children[1]), tree))

    def member_index(self, tree: lark.Tree[Any]) -> Result:
        base = self._select(tree.children[0])
        return self._top(self._item(base, self.visit(tree.children[1]), tree))

    def _raw_contains(self, item: Any, container: Any, tree: lark.Tree[Any]) -> Result:
        if isinstance(item, CELEvalError):
            return item
        if isinstance(container, Mapping):
            return cel_bool(isinstance(item, str) and item in container)
        if isinstance(container, list | tuple):
            found = any(loose_equal(item, element) for element in self._items(Raw(container)))
            return cel_bool(found)
        return self._apply("_in_", tree, item, to_cel(container, self.memo))

    def _size(self, tree: lark.Tree[Any]) -> Result:
        """``size()`` of ``tree``'s value, without converting the caller's data to count it."""
        value = self._select(tree) if tree.data in _SELECTIONS else self.visit(tree)
        if isinstance(value, Raw) and isinstance(value.value, str | bytes | list | tuple | dict):
            return cel_int(len(value.value))
        return self.function_eval(_SIZE, self._arguments("size", None, [self._top(value)]))

    # -- calls, macros and literals --

    def _values(self, exprlist: lark.Tree[Any] | None) -> Any:
        """The values of an ``exprlist`` as a list, or its first error (one frame per level)."""
        values = celtypes.ListType()
        if exprlist is None:
            return values
        self.budget.charge(1)
        for child in exprlist.children:
            values.append(self.visit(child))
        return next((v for v in values if isinstance(v, CELEvalError)), values)

    def _arguments(
        self, name: str, args_tree: lark.Tree[Any] | None, given: list[Any] | None = None
    ) -> Any:
        """A call's argument values (evaluated from ``args_tree``, or ``given``), charged."""
        values = self._values(args_tree) if given is None else celtypes.ListType(given)
        if isinstance(values, CELEvalError):
            return values
        if name == "string" and any(kind(v) in ("list", "map") for v in values):
            # No CEL overload, and str() of a container walks all of it.
            return _error("found no matching overload for string")
        self.budget.charge(CALL_COST)
        _charge_arguments(values)
        return values

    def ident_arg(self, tree: lark.Tree[Any]) -> Result:
        name = tree.children[0]
        args_tree = tree.children[1] if len(tree.children) == 2 else None
        args = args_tree.children if args_tree is not None else []
        if name == "has" and len(args) == 1:
            previous, self.strict = self.strict, True
            try:
                found = self._select(args[0])
            finally:
                self.strict = previous
            return cel_bool(not isinstance(found, CELEvalError))
        if name == "dyn" and len(args) == 1:
            return self.visit(args[0])
        if name == "size" and len(args) == 1:
            return self._size(args[0])
        return self.function_eval(name, self._arguments(str(name), args_tree))

    def dot_ident(self, tree: lark.Tree[Any]) -> Result:
        found: Result = super().primary(lark.Tree("primary", [tree]))
        return found

    dot_ident_arg = dot_ident

    def member_dot_arg(self, tree: lark.Tree[Any]) -> Result:
        target_tree, method = tree.children[0], tree.children[1]
        if method in _COMPREHENSIONS:
            return self._comprehension(tree)
        if method == "size" and len(tree.children) == 2:
            return self._size(target_tree)
        target = self.visit(target_tree)
        args = self._arguments(str(method), tree.children[2] if len(tree.children) == 3 else None)
        _charge_arguments([target])
        return self.method_eval(target, method, args)

    def paren_expr(self, tree: lark.Tree[Any]) -> Result:
        return self.visit(tree.children[0])

    def list_lit(self, tree: lark.Tree[Any]) -> Result:
        return self._values(tree.children[0] if tree.children else None)

    def map_lit(self, tree: lark.Tree[Any]) -> Result:
        result = celtypes.MapType()
        if not tree.children:
            return result
        self.budget.charge(1)  # the mapinits node
        values = self._values(tree.children[0])  # keys and values alternate
        if isinstance(values, CELEvalError):
            return values
        for key, value in zip(values[0::2], values[1::2], strict=True):
            try:
                if key in result:
                    return _error(f"Duplicate key {key!r}", ValueError(key), tree)
                result[key] = value
            except TypeError as exc:  # an unhashable key
                return _error(f"unsupported key type: {kind(key)}", exc, tree)
        return result

    def _items(self, target: Any) -> Iterator[Any]:
        """The CEL items of a list (keys of a map), converting plain data one at a time."""
        if not isinstance(target, Raw):
            for item in target:
                self.budget.charge(1)
                yield item
            return
        for item in target.value:
            self.budget.charge(1)
            yield to_cel(item, self.memo)

    def _comprehension(self, tree: lark.Tree[Any]) -> Result:
        macro = str(tree.children[1])
        args = tree.children[2].children if len(tree.children) == 3 else []
        if len(args) != 2 or args[0].data != "ident":
            return _error(f"{macro}() takes a variable name and an expression", tree=tree)
        target = self._select(tree.children[0])
        if isinstance(target, Raw) and not isinstance(target.value, Mapping | list | tuple):
            target = self._top(target)
        if isinstance(target, CELEvalError):
            return target
        if not isinstance(target, Raw | list | dict):
            return _error(f"{macro}() needs a list or a map, got {kind(target)}", tree=tree)
        outer, self.scope = self.scope, dict(self.scope)
        try:
            return self._loop(macro, str(args[0].children[0]), args[1], target)
        finally:
            self.scope = outer

    def _loop(self, macro: str, name: str, body: lark.Tree[Any], target: Any) -> Result:
        # all/exists stop at the first decisive element, as cel-go's loop conditions do; an
        # error stands unless a later element decides (CEL's commutative &&/||).
        decisive = macro == "exists"
        error: CELEvalError | None = None
        results = celtypes.ListType()
        count = 0
        for item in self._items(target):
            self.scope[name] = item
            value = self.visit(body)
            if macro == "map":
                if isinstance(value, CELEvalError):
                    return value
                results.append(value)
            elif not isinstance(value, celtypes.BoolType):
                if not isinstance(value, CELEvalError):
                    value = _error(f"{macro}() needs a bool, got {kind(value)}")
                if macro in ("filter", "exists_one"):
                    return value
                error = error or value
            elif macro == "filter":
                if value:
                    results.append(item)
            elif macro == "exists_one":
                count += bool(value)
            elif bool(value) == decisive:
                return value
        if macro in ("map", "filter"):
            return results
        if macro == "exists_one":
            return cel_bool(count == 1)
        return error or cel_bool(not decisive)


def literal_value(node: lark.Tree[Any]) -> Any:
    """The plain value of a ``literal`` node, evaluated without a budget."""
    return to_plain(MeteredEvaluator(node, {}, Budget(None)).visit(node))
