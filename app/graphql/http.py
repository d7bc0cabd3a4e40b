"""``/v0/gql``: GraphQL over HTTP, guarded like the rest of ``/v0``.

``POST`` takes ``{"query", "variables"?, "operationName"?}`` and answers 200 with
``{"data", "errors"?}`` (a body that is not such an object is a 400 in the same shape).
``GET`` runs a query (never a mutation) given as ``?query=…&variables=…``, and without one
serves the GraphiQL page in dev mode.  A thin handler over ``schema.execute`` rather than
strawberry's own Litestar controller, whose handlers rely on dependency inference that Litestar
now deprecates (a warning on every app build).
"""

from __future__ import annotations

import json
from typing import Any

from litestar import MediaType, Request, Response, get, post
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from app.graphql.context import Loaders
from app.graphql.schema import build_schema
from app.http.auth import require_signing_key
from app.http.context import services_of

PATH = "/v0/gql"


def _refused(message: str, status: int = 400) -> Response[Any]:
    return Response({"data": None, "errors": [{"message": message}]}, status_code=status)


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
    context = {"request": request, "loaders": Loaders(services=services_of(request))}
    try:
        result = await build_schema().execute(
            params["query"],
            variable_values=variables,
            context_value=context,
            operation_name=operation,
            allowed_operation_types=allowed,
        )
    except InvalidOperationTypeError:
        return _refused("mutations must be sent with POST", status=405)
    except CannotGetOperationTypeError:
        return _refused(f"no operation named {operation!r} in the document")
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [e.formatted for e in result.errors]
    return Response(body, status_code=200)


@post(PATH, guards=[require_signing_key], status_code=200)
async def graphql_post(request: Request[Any, Any, Any]) -> Response[Any]:
    """Run a GraphQL query or mutation."""
    try:
        params = json.loads(await request.body() or b"null")
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
