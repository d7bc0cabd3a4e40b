"""Run pages: the live runs list (``/`` and ``/runs``), a run's page, cancel and rerun.

Thin handlers: parse the query or form, call one function of ``runs_data`` or the engine, and
render or redirect.  Cancelling goes through ``run_command(CancelRun)`` as the APIs do;
rerunning (whole, or from a step) through ``app.graphql.rerun``, which the GraphQL ``rerun``
mutation uses too, so the UI and the API can never disagree on what a rerun is.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from app.engine.transitions import run_command
from app.graphql.context import ClientError
from app.graphql.rerun import rerun
from app.store.runs_view import load_run_row
from app.ui import runs_data
from app.ui.filters import RANGES, STATUSES, RunsQuery
from app.ui.render import not_found, now_ms, page, redirect, services_of
from domain import commands as c
from domain.ids import is_ulid


@get(["/", "/runs"], name="ui-runs")
async def runs_list(request: Request[Any, Any, Any]) -> Response[Any]:
    """Runs, newest first, filtered and paged on the server; the table refreshes itself."""
    q = RunsQuery.parse(request.query_params, request.query_params.getall("status", []))
    data = await runs_data.load_runs_page(services_of(request), q, now_ms(request))
    return page(
        request, "runs.html", fragment="_runs_table.html",
        q=q, data=data, statuses=STATUSES, ranges=list(RANGES),
    )  # fmt: skip


@get("/runs/{run_id:str}", name="ui-run")
async def run_page(request: Request[Any, Any, Any], run_id: FromPath[str]) -> Response[Any]:
    """A run: trigger, output or error, the timeline of its steps, and a banner for each of
    its items that is a dead letter (the run is stuck on it)."""
    run = await runs_data.load_run(services_of(request), run_id, now_ms(request))
    if run is None:
        return not_found(request, f"run {run_id}")
    return page(request, "run.html", fragment="_run_live.html", run=run)


@post("/runs/{run_id:str}/cancel", status_code=303)
async def cancel_run(request: Request[Any, Any, Any], run_id: FromPath[str]) -> Response[Any]:
    """Cancel a run that has not ended (a no-op for a cancelled one)."""
    services = services_of(request)
    if not is_ulid(run_id):
        return not_found(request, f"run {run_id}")
    async with services.read_db.connection() as conn:
        row = await load_run_row(conn, run_id.upper())
    if row is None:
        return not_found(request, f"run {run_id}")
    back = f"/runs/{row.run_id}"
    if row.ended_at is not None:
        return redirect(back, error=f"The run already ended ({row.status}).")
    await run_command(services, row.run_id, c.CancelRun(reason="cancelled from the dev UI"))
    return redirect(back, notice="Cancellation requested.")


@post("/runs/{run_id:str}/rerun", status_code=303)
async def rerun_run(request: Request[Any, Any, Any], run_id: FromPath[str]) -> Response[Any]:
    """Start a new run with the same trigger, from the start or from a chosen step."""
    form = await request.form()
    step = str(form.get("from_step") or "").strip() or None
    try:
        new_id = await rerun(services_of(request), run_id.upper(), step)
    except ClientError as exc:
        return redirect(f"/runs/{run_id}", error=str(exc))
    what = f"from step {step!r}" if step else "from the start"
    return redirect(f"/runs/{new_id}", notice=f"Rerun of {run_id.upper()} {what}.")


ROUTES = [runs_list, run_page, cancel_run, rerun_run]
