"""Self-hosted authentication of the API (protocol §5.3) and of event keys (§4.1).

In ``start`` mode ``/fn/register``, ``/v0/*`` and ``/v1/*`` require ``Authorization: Bearer``
naming the signing key (or its fallback): the raw key or its SHA-256 hash, with or without the
``signkey-<env>-`` prefix, since the Python SDK sends the bare hash and TS keeps the prefix.
In dev mode the API is open and any header is tolerated (the Node SDK sends
``Bearer undefined``).  Event keys are checked only in ``start`` mode too.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.drivers.signing import bearer_matches
from app.http.errors import ApiError

if TYPE_CHECKING:
    from app.main import Services


def require_signing_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Litestar guard: 401 ``unauthorized`` unless dev mode or a valid Bearer signing key."""
    services: Services = connection.app.state.services
    settings = services.settings
    if not settings.is_self_hosted:
        return
    if not bearer_matches(connection.headers.get("authorization"), settings.signing_keys):
        raise ApiError(401, "unauthorized")


def check_event_key(services: Services, key: str | None) -> None:
    """Raise ``ApiError`` unless ``key`` may send events (any key does in dev mode)."""
    settings = services.settings
    if not settings.is_self_hosted:
        return
    if not settings.event_keys:
        raise ApiError(503, "Event keys are required but none are configured")
    if not key:
        raise ApiError(401, "Event key is required")
    presented = key.encode("utf-8")
    matched = False
    for candidate in settings.event_keys:
        # No short-circuit: the time taken must not reveal which key matched, or how closely.
        matched |= hmac.compare_digest(presented, candidate.encode("utf-8"))
    if not matched:
        raise ApiError(401, "Event key not found")
