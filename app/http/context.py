"""Access to the process's ``Services`` from a request handler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request

if TYPE_CHECKING:
    from app.main import Services


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services
