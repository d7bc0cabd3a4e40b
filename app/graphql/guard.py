"""The checks a GraphQL document passes before it executes: size, tokens, aliases, depth, cost.

``refusal(schema, query, variables)`` returns why a document is refused (a ``Refusal`` with a
stable code and a message naming the limit), or None.  It parses the document itself, with
graphql-core's token limit, then measures it in one walk: fragments are measured once and
counted at every spread (so spreading a fragment a thousand times counts a thousand times,
and nested spreads cannot make the walk exponential), inline fragments and introspection
included.  The cost model is described in ``app.graphql.limits``; variables are resolved as
the executor will (the request's values, else the operation's defaults, else the field's).

Strawberry's ``MaxAliasesLimiter`` and ``QueryDepthLimiter`` are validation rules answered as
ordinary GraphQL errors (HTTP 200); both also re-walk a fragment at every spread, which a
document of nested spreads makes exponential, and the depth one skips introspection fields.
``MaxTokensLimiter`` only sets the parser option used here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    parse,
    value_from_ast_untyped,
)
from graphql.language import Lexer, Source, TokenKind

from app.graphql import limits as lim


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a document does not run; ``code`` goes to ``errors[0].extensions.code``."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Measure:
    aliases: int = 0
    depth: int = 0
    cost: int = 0

    def __add__(self, other: Measure) -> Measure:
        return Measure(
            self.aliases + other.aliases, max(self.depth, other.depth), self.cost + other.cost
        )


Args = Callable[[str], Any]
# How many items a list field returns, from its arguments (``args(name)``).
_SIZES: dict[tuple[str, str], Callable[[Args], int]] = {
    ("Query", "events"): lambda _: lim.MAX_EVENTS,
    ("Query", "stream"): lambda args: _stream_size(args("query")),
    ("Query", "apps"): lambda _: lim.APPS_ESTIMATE,
    ("Query", "functions"): lambda _: lim.FUNCTIONS_ESTIMATE,
    ("App", "functions"): lambda _: lim.FUNCTIONS_ESTIMATE,
    ("Event", "functionRuns"): lambda _: lim.RUNS_PER_EVENT,
    ("EventV2", "runs"): lambda _: lim.RUNS_PER_EVENT,
    ("StreamItem", "runs"): lambda _: lim.RUNS_PER_EVENT,
    ("FunctionRun", "events"): lambda _: lim.EVENTS_PER_RUN,
}
# Connections: the page their ``edges`` stand for.
_PAGED = frozenset({("Query", "runs"), ("Query", "eventsV2")})
_CONNECTIONS = frozenset({"RunsV2Connection", "EventsConnection"})
_FIXED = {
    ("RunsV2Connection", "totalCount"): lim.TOTAL_COUNT_COST,
    ("EventsConnection", "totalCount"): lim.TOTAL_COUNT_COST,
    ("FunctionRunV2", "trace"): lim.HISTORY_COST,
    ("Query", "runTrace"): lim.HISTORY_COST,
    ("Query", "runTraceSpanOutputByID"): lim.HISTORY_COST,
}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _stream_size(query: Any) -> int:
    limit = _int(query.get("limit") if isinstance(query, Mapping) else None, 20)
    return max(0, min(limit, lim.MAX_STREAM))


class _Walk:
    """One measurement of one document under one set of variables."""

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]
    ) -> None:
        self.schema = schema
        self.fragments: dict[str, FragmentDefinitionNode] = {}
        defaults: dict[str, Any] = {}
        for d in document.definitions:
            if isinstance(d, FragmentDefinitionNode):
                self.fragments.setdefault(d.name.value, d)
            elif isinstance(d, OperationDefinitionNode):
                for v in d.variable_definitions or ():
                    if v.default_value is not None:
                        defaults.setdefault(
                            v.variable.name.value, value_from_ast_untyped(v.default_value)
                        )
        self.variables = {**defaults, **variables}
        # Keyed by the page the fragment's ``edges`` stand for (1 outside a connection).
        self.memo: dict[tuple[str, int], Measure] = {}
        self.visiting: set[str] = set()

    def operation(self, op: OperationDefinitionNode) -> Measure:
        root = self.schema.get_root_type(op.operation)
        return self.selections(op.selection_set, root, page=1)

    def selections(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None, *, page: int
    ) -> Measure:
        total = Measure()
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                total += self.field(sel, parent, page=page)
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition
                on = self.schema.get_type(cond.name.value) if cond else parent
                total += self.selections(sel.selection_set, on, page=page)
            elif isinstance(sel, FragmentSpreadNode):
                total += self.fragment(sel.name.value, page=page)
        return total

    def fragment(self, name: str, *, page: int) -> Measure:
        found = self.memo.get((name, page))
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.visiting:
            return Measure()  # unknown or cyclic: validation reports it
        self.visiting.add(name)
        try:
            on = self.schema.get_type(definition.type_condition.name.value)
            found = self.selections(definition.selection_set, on, page=page)
        finally:
            self.visiting.discard(name)
        self.memo[(name, page)] = found
        return found

    def field(self, node: FieldNode, parent: GraphQLNamedType | None, *, page: int) -> Measure:
        name = node.name.value
        key = (parent.name if parent is not None else "", name)
        fields = (
            parent.fields if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else {}
        )
        definition = fields.get(name)
        own = Measure(aliases=1 if node.alias else 0, depth=1, cost=_FIXED.get(key, 1))
        if key[0] == "Mutation":
            own = Measure(own.aliases, 1, lim.MUTATION_COST)
        if node.selection_set is None:
            return own

        def args(arg: str) -> Any:
            for a in node.arguments or ():
                if a.name.value == arg:
                    return value_from_ast_untyped(a.value, self.variables)
            spec = definition.args.get(arg) if definition is not None else None
            return None if spec is None else spec.default_value

        child = get_named_type(definition.type) if definition is not None else None
        items, child_page = 1, 1
        if key in _PAGED:
            child_page = lim.page_size(_int(args("first"), lim.DEFAULT_PAGE))
        elif key in _SIZES:
            items = _SIZES[key](args)
        elif name == "edges" and key[0] in _CONNECTIONS:
            items = page
        inner = self.selections(node.selection_set, child, page=child_page)
        return Measure(own.aliases + inner.aliases, 1 + inner.depth, own.cost + items * inner.cost)


def measure(
    schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any] | None = None
) -> Measure:
    """The largest aliases, depth and cost among the document's operations."""
    walk = _Walk(schema, document, variables or {})
    found = Measure()
    for d in document.definitions:
        if isinstance(d, OperationDefinitionNode):
            m = walk.operation(d)
            found = Measure(
                max(found.aliases, m.aliases), max(found.depth, m.depth), max(found.cost, m.cost)
            )
    return found


@functools.lru_cache(maxsize=256)
def _parse(query: str) -> DocumentNode:
    # Clients poll with the same few documents; parsing is the costly part of the check.
    return parse(query, max_tokens=lim.MAX_TOKENS)


def _too_many_tokens(query: str) -> bool:
    lexer, count = Lexer(Source(query)), 0
    try:
        while lexer.advance().kind is not TokenKind.EOF:
            count += 1
            if count > lim.MAX_TOKENS:
                return True
    except GraphQLError:
        pass
    return False


def refusal(
    schema: GraphQLSchema, query: str, variables: Mapping[str, Any] | None = None
) -> Refusal | None:
    """Why ``query`` may not run, or None (a plain syntax error is left to the executor)."""
    size = len(query.encode())
    if size > lim.MAX_QUERY_BYTES:
        return Refusal(
            "QUERY_TOO_LARGE",
            f"the query document is {size} bytes, over the limit of {lim.MAX_QUERY_BYTES}",
        )
    try:
        document = _parse(query)
    except GraphQLSyntaxError as exc:
        if _too_many_tokens(query):
            return Refusal(
                "QUERY_TOO_LARGE",
                f"the query document has more than {lim.MAX_TOKENS} tokens",
            )
        if "nested too deeply" in exc.message:  # graphql-core's parser refuses it
            return Refusal(
                "QUERY_TOO_DEEP",
                f"the query document is nested too deeply (the limit is {lim.MAX_DEPTH} levels)",
            )
        return None
    found = measure(schema, document, variables)
    if found.aliases > lim.MAX_ALIASES:
        return Refusal(
            "TOO_MANY_ALIASES",
            f"the query uses {found.aliases} aliases (fragments counted at each spread), "
            f"over the limit of {lim.MAX_ALIASES}",
        )
    if found.depth > lim.MAX_DEPTH:
        return Refusal(
            "QUERY_TOO_DEEP",
            f"the query is nested {found.depth} levels deep, over the limit of {lim.MAX_DEPTH}",
        )
    if found.cost > lim.MAX_COST:
        return Refusal(
            "QUERY_TOO_COMPLEX",
            f"the query's estimated cost is {found.cost}, over the limit of {lim.MAX_COST} "
            "(each field costs 1 per item, lists multiply by their page size `first`, "
            f"totalCount costs {lim.TOTAL_COUNT_COST}, a trace {lim.HISTORY_COST}); "
            "ask for smaller pages or fewer fields",
        )
    return None
