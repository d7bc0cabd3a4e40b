"""The dead-letters page (``/dead-letters``): queue items set aside after failing internally,
with Retry and Discard, and the count the top navigation shows.

A dead letter stops its run until an operator acts, so the page names the run and function it
belongs to and why it died.  Retrying and discarding are ``app.store.dead_letters.retry`` and
``discard``, as ``POST /v1/dead-letters/{id}/retry`` and ``DELETE /v1/dead-letters/{id}`` do.
Both answer with a redirect back (to this page, or to the run page whose banner was used) and
a notice.  The navigation count is read once per full page (never for the live fragments the
pages poll) and capped, so a flood of dead letters cannot make every page slow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from app.store import dead_letters as store
from app.store.dead_letters import DeadLetter
from app.ui import runs_data
from app.ui.render import DEAD_LETTER_COUNT, NAV_COUNT_CAP, is_fragment, page, redirect, services_of
from domain.ids import is_ulid

if TYPE_CHECKING:
    from app.main import Services

PAGE_SIZE = 50
LIST_PATH = "/dead-letters"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterItem:
    dead: DeadLetter
    #: The function's name and slug when it is still registered (archived ones too).
    function_name: str | None
    function_slug: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLettersPage:
    items: list[DeadLetterItem]
    next_cursor: int | None
    before: int | None
    run_id: str


def back_path(value: str) -> str:
    """Where a form's ``back`` field asks to return: only this page or a run page, so a
    crafted form cannot send the operator elsewhere."""
    if value.startswith(f"{LIST_PATH}?") or value == LIST_PATH:
        return value
    run = value.removeprefix("/runs/")
    return value if value != run and is_ulid(run) else LIST_PATH


async def load_page(services: Services, before: int | None, run_id: str) -> DeadLettersPage:
    async with services.read_db.connection() as conn:
        found = await store.list_dead(
            conn, limit=PAGE_SIZE + 1, before=before, run_id=run_id or None
        )
        records, _ = await runs_data.function_names(conn)
    by_id = {r.id: r for r in records}
    shown = found[:PAGE_SIZE]
    items = []
    for dead in shown:
        record = by_id.get(dead.function_id) if dead.function_id else None
        items.append(
            DeadLetterItem(
                dead=dead,
                function_name=record.name if record else None,
                function_slug=record.slug if record else None,
            )
        )
    more = len(found) > PAGE_SIZE
    return DeadLettersPage(
        items=items, next_cursor=shown[-1].id if more else None, before=before, run_id=run_id
    )


async def note_nav_count(request: Request[Any, Any, Any]) -> None:
    """Leave the dead-letter count for the navigation of the page about to be rendered."""
    if request.method != "GET" or is_fragment(request):
        return  # redirects and live fragments draw no navigation
    async with services_of(request).read_db.connection() as conn:
        request.state[DEAD_LETTER_COUNT] = await store.count_dead(conn, NAV_COUNT_CAP + 1)


@get(LIST_PATH, name="ui-dead-letters")
async def dead_letters_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Dead letters, newest first (optionally one run's), with Retry and Discard; refreshing."""
    params = request.query_params
    raw_before = str(params.get("before") or "")
    before = store.parse_id(raw_before) if raw_before else None
    run_id = str(params.get("run_id") or "").strip()
    if raw_before and before is None:
        return redirect(LIST_PATH, error="The page cursor is not valid.")
    if run_id and not is_ulid(run_id):
        return redirect(LIST_PATH, error=f"{run_id[:100]!r} is not a run id.")
    data = await load_page(services_of(request), before, run_id.upper())
    return page(request, "dead_letters.html", fragment="_dead_letters_table.html", data=data)


@post(f"{LIST_PATH}/{{dead_id:str}}/retry", status_code=303)
async def retry(request: Request[Any, Any, Any], dead_id: FromPath[str]) -> Response[Any]:
    """Put a dead letter back on the queue, due now, with its failures reset."""
    back = back_path(str((await request.form()).get("back") or ""))
    key = store.parse_id(dead_id)
    if key is None:
        return redirect(back, error="That is not a dead letter id.")
    async with services_of(request).ingest_db.connection() as conn:
        outcome = await store.retry(conn, key)
    if outcome == "not-found":
        return redirect(back, error="That dead letter is gone (retried or discarded already).")
    if outcome == "already-queued":
        return redirect(back, notice=f"Dead letter {key} dropped: its job is queued again.")
    return redirect(back, notice=f"Dead letter {key} is back on the queue, due now.")


@post(f"{LIST_PATH}/{{dead_id:str}}/discard", status_code=303)
async def discard(request: Request[Any, Any, Any], dead_id: FromPath[str]) -> Response[Any]:
    """Drop a dead letter for good (its run stays where it is)."""
    back = back_path(str((await request.form()).get("back") or ""))
    key = store.parse_id(dead_id)
    discarded = False
    if key is not None:
        async with services_of(request).ingest_db.connection() as conn:
            discarded = await store.discard(conn, key)
    if not discarded:
        return redirect(back, error="That dead letter is gone (retried or discarded already).")
    return redirect(back, notice=f"Discarded dead letter {key}.")


ROUTES = [dead_letters_page, retry, discard]
