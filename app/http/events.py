"""The event API: ``POST /e/{key}`` stores events, ``POST /invoke/{slug}`` invokes a function.

Controllers only: check the key, read and parse the body, let ``domain.events`` judge every
event, and store the accepted ones with their processing items in one transaction
(``app.store.events.insert_events``) before replying, so an acknowledged event is durable and
will be processed.  Replies are Inngest's (``pkg/api/api.go``): ``{"ids": [...], "status":
200}`` (the TS SDK requires ``status`` in the body), its bare ``{"status", "message",
"error"}`` for key failures, and for a bad event ``{"ids", "status": 400, "error"}``, where
``ids`` are those of the events before the bad one, which are stored as Go stores them.  An
event PostgreSQL cannot hold (a NUL character) counts as a bad event.  A body that is not JSON
at all changes nothing (Go would have stored the events before the syntax error; SDKs never
send one).

Failures other than bad input reach ``app.http.errors.handle_exception``: a body over
``MAX_BODY_BYTES`` is 413 (whether announced by Content-Length or streamed in chunks, nothing
is read past the limit) and a database failure is 503 with ``Retry-After``.  When the
connection was lost mid-request the events may or may not be stored; a retry carrying the same
``x-inngest-event-id-seed`` derives the same internal ids (``domain.event_ids``), which
``insert_events`` stores once (``ON CONFLICT (internal_id) DO NOTHING``), and both SDKs keep the
header across their retries.  So does a retried partial send: the events stored the first time
are not stored again (Go stores them again under the same ids).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
from litestar import Request, Response, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath

from app.drivers.signing import bearer_matches
from app.http.errors import ERROR_FIELDS, RETRY_NOTE, ApiError, error_responses
from app.settings import Settings
from app.store.events import first_unstorable, insert_events, received
from domain.errors import InvalidEvent
from domain.events import (
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    event_ids_for,
    invocation_event,
    normalize_events,
)
from domain.ids import new_ulid

if TYPE_CHECKING:
    from app.main import Services

SEED_HEADER = "x-inngest-event-id-seed"
#: Parsing and storing a body takes about four times its size in memory (the decoded events,
#: their JSON for the insert, the statement's parameters).  Bodies over ``LARGE_BODY_BYTES``
#: (one maximum-size event) take turns, ``LARGE_BODIES_AT_ONCE`` at a time per process, so a
#: burst of them waits holding only its bytes.  The body is read before waiting, so a client
#: that sends slowly never holds a turn.
LARGE_BODY_BYTES = MAX_EVENT_BYTES
#: ``/invoke`` carries one event (at most ``MAX_EVENT_BYTES`` once compacted): its body may be
#: twice that, whitespace included, and is refused with 413 before it is read past the limit.
INVOKE_MAX_BODY_BYTES = 2 * MAX_EVENT_BYTES
LARGE_BODIES_AT_ONCE = 2
INVALID_BODY = "Request body must contain an event object or an array of event objects"
#: What msgspec raises for a body that is not JSON: also invalid UTF-8 and too-deep nesting.
UNREADABLE_JSON = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
#: What a 503 says when the connection was lost and the events may or may not be stored.
EVENTS_RETRY_NOTE = (
    f"Retrying with the same {SEED_HEADER} header is safe: the events get the same ids and "
    "are stored once (the SDKs keep the header across their retries); without it a retry may "
    "store them twice"
)
INVOKE_RETRY_NOTE = (
    f"Retrying with the same {SEED_HEADER} header is safe: the invocation gets the same id and "
    "is stored once; without it a retry may invoke the function twice"
)
#: ``opt`` of the ``/e`` routes: every failure carries ``ids`` (Go's shape, which SDKs read).
EVENTS_OPT = {ERROR_FIELDS: {"ids": []}, RETRY_NOTE: EVENTS_RETRY_NOTE}


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsRejected:
    """A ``POST /e`` 400 (Go's ``EventAPIResponse``): ``ids`` of the events stored before the
    bad one, and why that one was refused."""

    ids: list[str] = field(default_factory=list)
    status: int = 400
    error: str


#: The ``/e`` routes' failures: 400 in Go's shape, the others in the error envelope.
EVENTS_RESPONSES = {
    **error_responses(401, 413, 503),
    400: ResponseSpec(
        data_container=EventsRejected,
        description="Bad Request: an event broke a rule; the events before it are stored",
        generate_examples=False,
    ),
}

ACTIVE_FUNCTION_EXISTS = """
SELECT 1 FROM functions
 WHERE (slug = %s OR id = %s) AND archived_at IS NULL
 LIMIT 1
"""


@post(
    "/e/{key:str}",
    request_max_body_size=MAX_BODY_BYTES,
    status_code=200,
    responses=EVENTS_RESPONSES,
    opt=EVENTS_OPT,
)
async def ingest_events(request: Request[Any, Any, Any], key: FromPath[str]) -> Response[Any]:
    """Accept one event or an array of them; reply with their internal ids."""
    return await _ingest(request, key)


@post(
    "/e",
    request_max_body_size=MAX_BODY_BYTES,
    status_code=200,
    responses=EVENTS_RESPONSES,
    opt=EVENTS_OPT,
)
async def ingest_events_without_key(request: Request[Any, Any, Any]) -> Response[Any]:
    """``/e/`` with an empty key: Go's router matches it and answers "key required"."""
    return await _ingest(request, "")


async def _ingest(request: Request[Any, Any, Any], key: str) -> Response[Any]:
    services = _services(request)
    rejection = _event_key_rejection(services.settings, key)
    if rejection is not None:
        return rejection
    body = await request.body()  # over MAX_BODY_BYTES: RequestEntityTooLarge, answered 413
    if len(body) <= LARGE_BODY_BYTES:
        return await _accept(services, request, body)
    async with services.large_ingests:
        return await _accept(services, request, body)


async def _accept(
    services: Services, request: Request[Any, Any, Any], body: bytes
) -> Response[Any]:
    """Judge the body's events, store those Inngest would store, and answer as it does."""
    now_ms = services.clock.now_ms()
    try:
        judged = normalize_events(_parse_events(body), now_ms, len(body))
    except ApiError as exc:
        return _rejected([], exc.message)
    events = judged.events
    error = None if judged.error is None else judged.error.message
    unstorable = first_unstorable(events, body)
    if unstorable is not None:
        index, error = unstorable
        events = events[:index]
    ids = event_ids_for(len(events), request.headers.get(SEED_HEADER), new_ulid)
    try:
        await _store(services, list(zip(ids, events, strict=True)), now_ms)
    except psycopg.DataError as exc:
        # A value the checks above did not foresee; the transaction rolled back whole.
        return _rejected([], _unstorable(exc))
    # Any other database failure propagates: 503 (see EVENTS_RETRY_NOTE).
    if error is not None:
        return _rejected(ids, error)
    return Response({"ids": ids, "status": 200}, status_code=200)


@post(
    "/invoke/{slug:str}",
    request_max_body_size=INVOKE_MAX_BODY_BYTES,
    status_code=200,
    responses=error_responses(400, 401, 404, 413, 503),
    opt={RETRY_NOTE: INVOKE_RETRY_NOTE},
)
async def invoke_function(request: Request[Any, Any, Any], slug: FromPath[str]) -> Response[Any]:
    """Store an ``inngest/function.invoked`` event for ``slug`` (a function slug or id)."""
    services = _services(request)
    settings = services.settings
    # Go leaves this endpoint open ("XXX: check signing keys here"); a self-hosted server
    # must not let anyone start functions, so it asks for the signing key as the REST API does.
    if settings.is_self_hosted and not bearer_matches(
        request.headers.get("authorization"), settings.signing_keys
    ):
        raise ApiError(401, "Authentication failed")
    try:
        raw = msgspec.json.decode(await request.body())
    except UNREADABLE_JSON as exc:
        raise ApiError(400, f"Unable to read post data request: {exc}") from exc
    now_ms = services.clock.now_ms()
    try:
        event = invocation_event(raw, slug, now_ms)
    except InvalidEvent as exc:
        raise ApiError(400, f"Invalid invocation event: {exc.message}") from exc
    [internal_id] = event_ids_for(1, request.headers.get(SEED_HEADER), new_ulid, start=0)
    async with services.ingest_db.connection() as conn:
        cur = await conn.execute(ACTIVE_FUNCTION_EXISTS, (slug, slug))
        # Go stores the event whatever the slug; a 404 tells the caller about a typo instead
        # of leaving an event that nothing will ever run.
        if await cur.fetchone() is None:
            raise ApiError(404, f"function not found: {slug}")
        try:
            async with conn.transaction():
                await insert_events(conn, [(internal_id, event)], received(now_ms), now_ms)
        except psycopg.DataError as exc:
            raise ApiError(400, _unstorable(exc)) from exc
    return Response({"id": internal_id, "status": 200}, status_code=200)


ROUTES = [ingest_events, ingest_events_without_key, invoke_function]


def _services(request: Request[Any, Any, Any]) -> Services:
    # Not ``app.main.services_of``: app.main imports this module, so importing it back here
    # at module level would be circular.
    services: Services = request.app.state.services
    return services


def _event_key_rejection(settings: Settings, key: str) -> Response[Any] | None:
    """Go's event-key rules; ``None`` when the key is accepted.

    TEMPORARY: ``app.http.auth.check_event_key`` is being written to own these rules; call it
    here once it lands and delete this function.  Until then this mirrors Go: self-hosted
    without configured keys is 503, an empty key is 401 in any mode, and self-hosted keys must
    be one of the configured ones.  Dev accepts any key (the SDKs send ``NO_EVENT_KEY_SET``)
    even when keys are configured, because ``inngest dev`` never passes its keys to the API
    while ``stepwell dev`` does read ``INNGEST_EVENT_KEY``.  The body is Go's bare
    ``apiResponse``, not the error envelope.
    """
    if settings.is_self_hosted and not settings.event_keys:
        return _key_failure(503, "Event keys are required to process events securely")
    if not key:
        return _key_failure(401, "Event key is required")
    if settings.is_self_hosted and not _known_key(key, settings.event_keys):
        return _key_failure(401, "Event key not found")
    return None


def _known_key(key: str, known: tuple[str, ...]) -> bool:
    presented = key.encode()
    matched = False
    for candidate in known:
        # Constant time, and no early exit, so timing does not reveal a key's prefix.
        matched |= hmac.compare_digest(presented, candidate.encode())
    return matched


def _key_failure(status: int, error: str) -> Response[Any]:
    return Response({"status": status, "message": "", "error": error}, status_code=status)


def _rejected(ids: list[str], error: str) -> Response[Any]:
    """Go's ``EventAPIResponse`` for a bad request: the ids of the events stored before it."""
    return Response({"ids": ids, "status": 400, "error": error}, status_code=400)


def _parse_events(body: bytes) -> list[Any]:
    """The body's events: one object, or an array of anything (each item is judged later)."""
    if not body.strip():
        return []  # Go answers an empty body with 200 and stores nothing.
    try:
        parsed = msgspec.json.decode(body)
    except UNREADABLE_JSON as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from exc
    if isinstance(parsed, list):
        return parsed
    if isinstance(parsed, dict):
        return [parsed]
    raise ApiError(400, INVALID_BODY)


async def _store(services: Services, pairs: list[tuple[str, dict[str, Any]]], now_ms: int) -> None:
    if not pairs:
        return
    async with services.ingest_db.connection() as conn, conn.transaction():
        await insert_events(conn, pairs, received(now_ms), now_ms)


def _unstorable(exc: psycopg.DataError) -> str:
    # JSON allows "\u0000" but PostgreSQL text and jsonb cannot hold it; the transaction has
    # rolled back, so this is a client error about the payload, not a server failure.
    return f"event cannot be stored: {exc}".splitlines()[0]
