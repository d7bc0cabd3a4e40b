"""``GET /health``: the process is up and its database answers."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from app.http.errors import envelope, error_responses


@get("/health", responses=error_responses(503))
async def health(state: State) -> Response[Any]:
    """Liveness and database reachability: ``{"status": 200, "message": "OK"}``."""
    try:
        async with state.services.ingest_db.connection() as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:
        return envelope(503, f"database unavailable: {type(exc).__name__}")
    return Response({"status": 200, "message": "OK"})
