"""``GET /dev``: the dev server's self-description (protocol §6), which the TS SDK probes.

Answers the Go dev server's ``InfoResponse`` shape: version, start options, and the active
functions in Inngest's function JSON (UUID ``id``, ``slug``, ``triggers``, ``steps`` with their
``uri``, plus the flow-control settings as synced).  Self-hosted servers answer 404.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get

from app.http.errors import ApiError, error_responses
from app.registry import store
from app.registry.store import FunctionRecord
from domain.function_config import EventTrigger

if TYPE_CHECKING:
    from app.main import Services
    from app.settings import Settings

#: Keys of a synced config that ``/dev`` rebuilds rather than copies.
_REBUILT = frozenset({"id", "name", "slug", "steps", "triggers", "retries"})


@functools.cache
def server_version() -> str:
    try:
        return f"stepwell-{metadata.version('stepwell')}"
    except metadata.PackageNotFoundError:
        return "stepwell-dev"


@get("/dev", responses=error_responses(404, 503))
async def dev_info(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Server version, start options and synced functions (dev mode only)."""
    services: Services = request.app.state.services
    settings = services.settings
    if settings.is_self_hosted:
        raise ApiError(404, "not found")
    async with services.read_db.connection() as conn:
        functions = await store.list_functions(conn)
    body = {
        "version": server_version(),
        "authed": False,
        "startOpts": _start_opts(settings),
        "functions": [function_json(f) for f in functions],
        "handlers": [],
        "isSingleNodeService": False,
        "isMissingSigningKey": False,
        "isMissingEventKeys": False,
        "features": {},
    }
    return Response(body)


def _start_opts(settings: Settings) -> dict[str, Any]:
    return {
        "dir": str(settings.data_dir),
        "urls": list(settings.sdk_urls),
        "autodiscover": settings.discovery,
        "poll": settings.poll,
        "poll_interval": settings.poll_interval,
        "retry_interval": settings.retry_interval or 0,
        "queue_workers": settings.workers,
        "require_keys": settings.is_self_hosted,
    }


def function_json(record: FunctionRecord) -> dict[str, Any]:
    """A function as Inngest's ``inngest.Function`` JSON."""
    config = record.config
    raw = {str(k): v for k, v in config.raw.items() if str(k).lower() not in _REBUILT}
    step_key, step = next(iter(config.raw.get("steps", {"step": {}}).items()))
    step_name = step.get("name") if isinstance(step, dict) else None
    return {
        "id": record.id,
        "fv": record.version,
        "name": config.name,
        "slug": config.slug,
        "triggers": [
            {"event": t.event, **({"expression": t.expression} if t.expression else {})}
            if isinstance(t, EventTrigger)
            else {"cron": t.cron, **({"jitter": t.jitter} if t.jitter else {})}
            for t in config.triggers
        ],
        "steps": [
            {
                "id": step_key,
                "name": step_name or step_key,
                "uri": config.step_url,
                "retries": config.retries,
            }
        ],
        **raw,
    }


ROUTES = [dev_info]
