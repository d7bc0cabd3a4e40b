"""The OpenAPI document and its viewers under ``/openapi``, guarded like the API they describe.

In self-hosted mode (``stepwell start``) the routes need the Bearer signing key, as ``/v0/*``
and ``/v1/*`` do: the document lists every route and parameter of a server that is otherwise
closed.  In dev mode they are open (``require_signing_key`` lets everything through).
"""

from __future__ import annotations

from litestar import Router
from litestar.openapi import OpenAPIConfig

from app.http.auth import require_signing_key

PATH = "/openapi"


def openapi_config() -> OpenAPIConfig:
    """A fresh config per app: Litestar registers the document's handlers on its router."""
    router = Router(PATH, route_handlers=[], guards=[require_signing_key], include_in_schema=False)
    return OpenAPIConfig(
        title="Stepwell", version="0.1.0", openapi_router=router, use_handler_docstrings=True
    )
