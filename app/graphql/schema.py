"""The GraphQL schema: ``Query`` and ``Mutation`` with Inngest's scalars, built once on demand.

Field and argument names are Inngest's exactly (``appID``, ``runID``, ``IDs``), so automatic
camel-casing is off and Python attributes carry the GraphQL names.  Errors a client caused
(``ClientError``: unknown ids, bad cursors, invalid queries) are answers, not faults, so only
the others are logged.
"""

from __future__ import annotations

import functools

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from app.graphql.context import ClientError
from app.graphql.mutations import Mutation
from app.graphql.queries import Query
from app.graphql.scalars import SCALARS


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        unexpected = [
            e
            for e in errors
            if e.original_error is not None and not isinstance(e.original_error, ClientError)
        ]
        super().process_errors(unexpected, execution_context)


@functools.cache
def build_schema() -> strawberry.Schema:
    return _Schema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(auto_camel_case=False, scalar_map=SCALARS),
        # Clients poll with the same few documents: parse and validate each once (the LRU
        # caches live in strawberry and are shared by every request's extension instance).
        extensions=[lambda: ParserCache(maxsize=256), lambda: ValidationCache(maxsize=256)],
    )
