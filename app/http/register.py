"""``POST /fn/register``: an SDK registers its app (protocol §1.2).

Thin: the raw body goes to ``app.registry.register.register_app`` unparsed (it must tolerate
malformed JSON with a 400, and the checksum is over what was sent), and the result is answered
as-is.  Self-hosted servers require the signing key as a Bearer token first.  A body over
Litestar's default limit (10 MB) is 413 before anything is parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post

from app.http.auth import require_signing_key
from app.http.errors import error_responses
from app.registry.register import register_app

if TYPE_CHECKING:
    from app.main import Services


@post(
    "/fn/register",
    guards=[require_signing_key],
    status_code=200,
    responses=error_responses(400, 401, 413, 500),
)
async def register_handler(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Register (or re-sync) the app described by the body."""
    services: Services = request.app.state.services
    result = await register_app(services, await request.body(), request.headers)
    return Response(result.body, status_code=result.status)


ROUTES = [register_handler]
