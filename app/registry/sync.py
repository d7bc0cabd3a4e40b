"""Server-initiated sync: the PUT to an app's serve URL that makes its SDK register (§1.1).

``sync_url`` sends ``PUT <url>`` with ``{"url": url}`` as canonical JSON, our server kind and,
when we hold a signing key, an ``X-Inngest-Signature``.  Out-of-band (the default, and all a
dev-mode Python SDK supports) the SDK POSTs ``/fn/register`` itself before answering; asked for
in-band, an SDK may instead return its config in the reply, which is registered here (anything
else falls back to a plain PUT).  Failures become the app's ``error`` with Go's codes (400 ⇒ the
SDK's message, 401 ``unauthorized``, 403 ``forbidden``, 404 ``url_not_found``, 500
``internal_server_error``, no connection ``unreachable``); a URL that has never registered gets a
placeholder app named after the URL so that it shows up, and a successful sync removes it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from app.drivers.signing import canonical_json, sign
from app.registry import store
from app.registry.register import register_app, server_kind

if TYPE_CHECKING:
    from app.main import Services

log = logging.getLogger(__name__)

SYNC_TIMEOUT_S = 10.0
UNREACHABLE = "unreachable"
UNSUPPORTED_PROTOCOL = "unsupported_protocol"
IN_BAND = "in_band"
_STATUS_ERRORS = {
    401: "unauthorized",
    403: "forbidden",
    404: "url_not_found",
    500: "internal_server_error",
}
_MAX_MESSAGE = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncOutcome:
    url: str
    error: str | None = None
    #: Whether the reply carried ``X-Inngest-SDK``.
    is_sdk: bool = False
    #: ``in_band`` / ``out_of_band`` as the SDK reported it, if it did.
    sync_kind: str | None = None
    #: Set when we registered an in-band reply ourselves.
    app_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def sync_url(
    services: Services, url: str, *, in_band: bool = False, autodiscovered: bool = False
) -> SyncOutcome:
    """PUT ``url`` so that its SDK registers, and record the outcome on the app(s) there."""
    outcome = await _put(services, url, in_band=in_band)
    if outcome is None:  # the SDK declined in-band: a plain PUT works with every SDK
        outcome = await _put(services, url, in_band=False)
    assert outcome is not None
    if outcome.error is not None:
        log.debug("sync of %s failed: %s", url, outcome.error)
    await _record(services, outcome, autodiscovered=autodiscovered)
    return outcome


async def _put(services: Services, url: str, *, in_band: bool) -> SyncOutcome | None:
    body = canonical_json({"url": url})
    headers = {"Content-Type": "application/json", "X-Inngest-Server-Kind": server_kind(services)}
    if in_band:
        headers["X-Inngest-Sync-Kind"] = IN_BAND
    key = services.settings.signing_key
    if key:
        headers["X-Inngest-Signature"] = sign(body, key, services.clock.now_ms() // 1000)
    assert services.http is not None, "services not started"
    try:
        reply = await services.http.put(url, content=body, headers=headers, timeout=SYNC_TIMEOUT_S)
    except httpx.UnsupportedProtocol:
        return SyncOutcome(url=url, error=UNSUPPORTED_PROTOCOL)
    except (httpx.HTTPError, httpx.InvalidURL):
        return SyncOutcome(url=url, error=UNREACHABLE)
    is_sdk = "x-inngest-sdk" in reply.headers
    kind = reply.headers.get("x-inngest-sync-kind")
    if in_band:
        if reply.status_code == 200 and kind == IN_BAND and is_sdk:
            result = await register_app(services, reply.content, {}, in_band_url=url)
            return SyncOutcome(
                url=url, error=result.error, is_sdk=True, sync_kind=kind, app_id=result.app_id
            )
        return None
    return SyncOutcome(url=url, error=_reply_error(reply, is_sdk), is_sdk=is_sdk, sync_kind=kind)


def _reply_error(reply: httpx.Response, is_sdk: bool) -> str | None:
    status = reply.status_code
    if status == 400:
        return _message(reply, "message", "error") or "bad_request"
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    if not is_sdk:
        # Whatever answered is not an SDK, so for syncing purposes the app is not there.
        return UNREACHABLE
    if not 200 <= status < 300:
        return f"unexpected_status_{status}"
    # The Python SDK relays a failed /fn/register reply with HTTP 200 (out-of-band).
    return _message(reply, "error")


def _message(reply: httpx.Response, *keys: str) -> str | None:
    try:
        body: Any = json.loads(reply.content)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in keys:
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:_MAX_MESSAGE]
    return None


async def _record(services: Services, outcome: SyncOutcome, *, autodiscovered: bool) -> None:
    now = datetime.fromtimestamp(services.clock.now_ms() / 1000, UTC)
    async with services.ingest_db.connection() as conn, conn.transaction():
        if outcome.error is None:
            # The SDK registered (under its app name): the URL's placeholder has served its turn.
            await store.delete_placeholders(conn, outcome.url)
            if autodiscovered:
                await store.mark_autodiscovered(conn, outcome.url)
        elif outcome.is_sdk or not autodiscovered:
            # A probe that found no SDK leaves no trace; anything else should be visible.
            await store.record_sync_error(
                conn, outcome.url, outcome.error, now, autodiscovered=autodiscovered
            )
