"""REST v1 dead letters: ``GET /v1/dead-letters``, ``POST /v1/dead-letters/{id}/retry`` and
``DELETE /v1/dead-letters/{id}`` (the repository is ``app.store.dead_letters``).

A dead letter is a queue item the worker set aside after it kept failing internally; until an
operator acts, the run it belongs to is stuck.  The list is newest first, in keyset pages:
``cursor`` is the id of the last dead letter of the previous page (``metadata.next_cursor``
names it, or is null on the last page).  Retrying puts the item back on the queue, due now,
with its failure count reset; discarding drops it for good.  Ids are positive integers (the
queue item's id, kept when it was buried); anything else is 400.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, delete, get, post
from litestar.params import Parameter

from app.http.auth import require_signing_key
from app.http.context import services_of
from app.http.errors import ApiError, error_responses
from app.http.runs import envelope, iso
from app.store import dead_letters as store
from app.store.dead_letters import DeadLetter
from domain.ids import is_ulid

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DeadLetterIdParam = Annotated[str, Parameter(description="The dead letter's id (an integer)")]


def dead_letter_json(dead: DeadLetter) -> dict[str, Any]:
    """One dead letter as the API shows it."""
    return {
        "id": dead.id,
        "kind": dead.kind,
        "job_id": dead.job_id,
        "run_id": dead.run_id,
        "function_id": dead.function_id,
        "attempt": dead.attempt,
        "max_attempts": dead.max_attempts,
        "failures": dead.failures,
        "reason": dead.reason,
        "enqueued_at": iso(dead.enqueued_at),
        "died_at": iso(dead.died_at),
        "payload": dead.payload,
    }


def parse_id(value: str, what: str = "dead letter ID") -> int:
    """A dead letter id from its decimal text; 400 for anything else."""
    key = store.parse_id(value)
    if key is None:
        raise ApiError(400, f"Invalid {what}: {value[:100]!r} is not a positive integer")
    return key


def _limit(value: int | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, f"Invalid limit query parameter: must be 1-{MAX_LIMIT}")
    return value


def _run_id(value: str | None) -> str | None:
    if not value:
        return None
    if not is_ulid(value):
        raise ApiError(400, f"Invalid run_id query parameter: {value[:100]!r} is not a ULID")
    return value.upper()


@get(
    "/v1/dead-letters",
    guards=[require_signing_key],
    responses=error_responses(400, 401, 503),
    summary="List dead letters",
    operation_id="ListDeadLetters",
    tags=["Dead letters"],
)
async def list_dead_letters(
    request: Request[Any, Any, Any],
    *,
    limit: Annotated[
        int | None,
        Parameter(description=f"Dead letters per page: 1-{MAX_LIMIT}, {DEFAULT_LIMIT} when absent"),
    ] = None,
    cursor: Annotated[
        str | None,
        Parameter(description="`metadata.next_cursor` of the previous page"),
    ] = None,
    run_id: Annotated[
        str | None, Parameter(description="Only the dead letters of this run (ULID)")
    ] = None,
) -> dict[str, Any]:
    """Queue items set aside after failing internally again and again, newest first.

    Each names its ``kind``, ``job_id``, run and function, the run's ``attempt`` when it died,
    its failed deliveries (``failures``) and the last ``reason``.  Page on with ``cursor`` set
    to ``metadata.next_cursor`` (null on the last page).
    """
    size = _limit(limit)
    before = parse_id(cursor, "cursor query parameter") if cursor else None
    async with services_of(request).read_db.connection() as conn:
        found = await store.list_dead(conn, limit=size + 1, before=before, run_id=_run_id(run_id))
    shown = found[:size]
    body = envelope([dead_letter_json(d) for d in shown])
    body["metadata"]["next_cursor"] = str(shown[-1].id) if len(found) > size else None
    return body


@post(
    "/v1/dead-letters/{dead_letter_id:str}/retry",
    status_code=200,
    guards=[require_signing_key],
    responses=error_responses(400, 401, 404, 503),
    summary="Retry a dead letter",
    operation_id="RetryDeadLetter",
    tags=["Dead letters"],
)
async def retry_dead_letter(
    request: Request[Any, Any, Any], dead_letter_id: DeadLetterIdParam
) -> dict[str, Any]:
    """Put the item back on the queue, due now, with its failures reset.

    ``outcome`` is ``requeued``, or ``already-queued`` when the same job was enqueued again
    meanwhile (the dead letter is then only dropped).
    """
    key = parse_id(dead_letter_id)
    async with services_of(request).ingest_db.connection() as conn:
        outcome = await store.retry(conn, key)
    if outcome == "not-found":
        raise ApiError(404, "Dead letter not found")
    return envelope({"id": key, "outcome": outcome})


@delete(
    "/v1/dead-letters/{dead_letter_id:str}",
    status_code=200,
    guards=[require_signing_key],
    responses=error_responses(400, 401, 404, 503),
    summary="Discard a dead letter",
    operation_id="DiscardDeadLetter",
    tags=["Dead letters"],
)
async def discard_dead_letter(
    request: Request[Any, Any, Any], dead_letter_id: DeadLetterIdParam
) -> dict[str, Any]:
    """Drop the item for good; its run stays where it is (cancel it if it cannot go on)."""
    key = parse_id(dead_letter_id)
    async with services_of(request).ingest_db.connection() as conn:
        discarded = await store.discard(conn, key)
    if not discarded:
        raise ApiError(404, "Dead letter not found")
    return envelope({"id": key, "discarded": True})


ROUTES = [list_dead_letters, retry_dead_letter, discard_dead_letter]
