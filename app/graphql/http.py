"""``/v0/gql``: GraphQL over HTTP, guarded like the rest of ``/v0``.

``POST`` takes ``{"query", "variables"?, "operationName"?}`` and answers 200 with
``{"data", "errors"?}`` (a body that is not such an object is a 400 in the same shape).
``GET`` runs a query (never a mutation) given as ``?query=…&variables=…``, and without one
serves the GraphiQL page in dev mode.  A thin handler over ``schema.execute`` rather than
strawberry's own Litestar controller, whose handlers rely on dependency inference that Litestar
now deprecates (a warning on every app build).

Before anything executes, the document passes ``guard.refusal`` (size, tokens, aliases, depth,
cost): a refused one is a 400 whose error carries ``extensions.code``, and a body over
``MAX_BODY_BYTES`` a 413 in the same shape.  A request then runs in a ``RequestScope`` for at
most ``REQUEST_SECONDS`` (then 503 ``REQUEST_TIMEOUT``), stops when its client disconnects,
and always ends by giving back every connection and task it held.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psycopg
from litestar import MediaType, Request, Response, get, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from strawberry.exceptions import MissingQueryError
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from app.graphql.context import Loaders
from app.graphql.guard import refusal
from app.graphql.limits import MAX_BODY_BYTES, REQUEST_SECONDS
from app.graphql.schema import build_schema
from app.graphql.scope import RequestScope
from app.http.auth import require_signing_key
from app.http.context import services_of

PATH = "/v0/gql"


def _refused(
    message: str, status: int = 400, code: str | None = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["extensions"] = {"code": code}
    return Response({"data": None, "errors": [error]}, status_code=status, headers=headers)


async def _until_disconnected(request: Request[Any, Any, Any]) -> None:
    # After the body, the next ASGI message is the disconnect (servers send it when the client
    # goes away, and once the response is complete).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _run(
    request: Request[Any, Any, Any],
    scope: RequestScope,
    params: dict[str, Any],
    allowed: frozenset[OperationType],
) -> ExecutionResult | Response[Any]:
    """Execute within the deadline, unless the client goes away first (both are tasks of the
    scope, so whichever is left running is cancelled when it closes)."""
    execution = scope.spawn(
        build_schema().execute(
            params["query"],
            variable_values=params.get("variables"),
            context_value={"request": request, "loaders": Loaders.of(scope)},
            operation_name=params.get("operationName"),
            allowed_operation_types=allowed,
        )
    )
    gone = scope.spawn(_until_disconnected(request))
    first = asyncio.FIRST_COMPLETED
    await asyncio.wait({execution, gone}, timeout=REQUEST_SECONDS, return_when=first)
    if gone.done() and not execution.done() and gone.exception() is not None:
        # A server that cannot report disconnects: the deadline alone bounds the request.
        await asyncio.wait({execution}, timeout=scope.deadline - time.monotonic())
    if execution.done():
        return execution.result()
    if gone.done():
        return _refused("the client disconnected", code="CLIENT_DISCONNECTED")
    return _refused(
        f"the request did not complete within {REQUEST_SECONDS:g} s; ask for less",
        status=503,
        code="REQUEST_TIMEOUT",
        headers={"Retry-After": "5"},
    )


async def _execute(
    request: Request[Any, Any, Any],
    params: Any,
    allowed: frozenset[OperationType] = frozenset(OperationType),
) -> Response[Any]:
    if not isinstance(params, dict) or not isinstance(params.get("query"), str):
        return _refused("a GraphQL request is an object with a string 'query'")
    variables, operation = params.get("variables"), params.get("operationName")
    if variables is not None and not isinstance(variables, dict):
        return _refused("'variables' must be an object")
    if operation is not None and not isinstance(operation, str):
        return _refused("'operationName' must be a string")
    refused = refusal(build_schema()._schema, params["query"], variables)
    if refused is not None:
        return _refused(refused.message, code=refused.code)
    scope = RequestScope(services_of(request), seconds=REQUEST_SECONDS)
    try:
        outcome = await _run(request, scope, params, allowed)
    except InvalidOperationTypeError:
        return _refused("mutations must be sent with POST", status=405)
    except CannotGetOperationTypeError:
        return _refused(f"no operation named {operation!r} in the document")
    except MissingQueryError:
        return _refused("the query is empty")
    finally:
        await scope.close()
    if isinstance(outcome, Response):
        return outcome
    body: dict[str, Any] = {"data": outcome.data}
    if outcome.errors:
        body["errors"] = [e.formatted for e in outcome.errors]
        if any(isinstance(e.original_error, psycopg.OperationalError) for e in outcome.errors):
            # The database was busy or unreachable (a full pool, a restart): as REST answers
            # it, retryable, so that clients back off instead of reading partial data as final.
            return Response(body, status_code=503, headers={"Retry-After": "2"})
    return Response(body, status_code=200)


@post(PATH, guards=[require_signing_key], status_code=200, request_max_body_size=MAX_BODY_BYTES)
async def graphql_post(request: Request[Any, Any, Any]) -> Response[Any]:
    """Run a GraphQL query or mutation."""
    try:
        params = json.loads(await request.body() or b"null")
    except RequestEntityTooLarge:
        return _refused(
            f"the request body is over the limit of {MAX_BODY_BYTES} bytes",
            status=413,
            code="REQUEST_TOO_LARGE",
        )
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
        return _refused("the body is not valid JSON")
    return await _execute(request, params)


@get(PATH, guards=[require_signing_key])
async def graphql_get(request: Request[Any, Any, Any]) -> Response[Any]:
    """Run a query from the URL, or serve GraphiQL (dev mode only)."""
    query = request.query_params.get("query")
    if query is None:
        if services_of(request).settings.is_self_hosted:
            return _refused("query is required")
        return Response(get_graphql_ide_html("graphiql"), media_type=MediaType.HTML)
    params: dict[str, Any] = {
        "query": query,
        "operationName": request.query_params.get("operationName"),
    }
    raw_variables = request.query_params.get("variables")
    try:
        params["variables"] = json.loads(raw_variables) if raw_variables else None
    except ValueError:
        return _refused("'variables' is not valid JSON")
    return await _execute(request, params, frozenset({OperationType.QUERY}))


ROUTES = [graphql_post, graphql_get]
