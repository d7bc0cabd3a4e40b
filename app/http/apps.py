"""REST v1 app endpoints: ``GET /v1/apps/{appName}/functions`` (a bare array, as upstream)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import Parameter

from app.http.auth import require_signing_key
from app.http.context import services_of
from app.http.errors import ApiError, error_responses
from domain.ids import ENV_ID

APP_FUNCTIONS = """
SELECT f.id, f.app_id, f.slug, f.name, f.config, f.created_at, f.archived_at
  FROM functions f JOIN apps a ON a.id = f.app_id
 WHERE a.name = %s AND f.archived_at IS NULL
 ORDER BY f.slug
"""
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _iso(value: datetime | None) -> str:
    if value is None:
        return _ZERO_TIME
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@get(
    "/v1/apps/{app_name:str}/functions",
    guards=[require_signing_key],
    responses=error_responses(400, 401, 404, 503),
    summary="List an app's functions",
    operation_id="ListAppFunctions",
    tags=["Apps"],
)
async def app_functions(
    request: Request[Any, Any, Any],
    app_name: Annotated[str, Parameter(description="The app's id as its SDK names it")],
) -> list[dict[str, Any]]:
    """The app's active functions: ``internal_id``, ``id`` (slug), ``name``, ``config``…"""
    services = services_of(request)
    async with services.read_db.connection() as conn:
        cur = await conn.execute(APP_FUNCTIONS, (app_name,))
        rows = await cur.fetchall()
    if not rows:
        raise ApiError(404, f"app {app_name!r} not found or has no functions")
    return [
        {
            "internal_id": r[0],
            "env_id": ENV_ID,
            "app_id": r[1],
            "id": r[2],
            "name": r[3],
            "config": r[4],
            "created_at": _iso(r[5]),
            "archived_at": _iso(r[6]),
        }
        for r in rows
    ]


ROUTES = [app_functions]
