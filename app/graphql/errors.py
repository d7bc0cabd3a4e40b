"""The failures a GraphQL client caused, answered as GraphQL errors and never logged as faults.

``ClientError`` and its subclasses are the expected failures — an unknown run or event id, a
malformed cursor, a filter too costly to evaluate.  A subclass with a ``code`` shows it as
``extensions.code`` of its error (graphql-core copies an original error's ``extensions``).

    ClientError
    ├── NotFound              an id that names nothing (yet)
    ├── BadRequest            arguments that cannot be served
    └── QueryBudgetExceeded   (app.graphql.cel_filter) a CEL ``query`` over its budget
"""

from __future__ import annotations

from typing import Any, ClassVar


class ClientError(Exception):
    """A request the API refuses; the message is what the client reads."""

    code: ClassVar[str | None] = None

    @property
    def extensions(self) -> dict[str, Any] | None:
        return None if self.code is None else {"code": self.code}


class NotFound(ClientError):
    """An id that names nothing (yet): clients poll on this error, so it is never a null."""


class BadRequest(ClientError):
    """Arguments that cannot be served (malformed id, cursor or expression…)."""
