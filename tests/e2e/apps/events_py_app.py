"""Stepwell e2e app for big events: official ``inngest`` Python SDK (0.5.x) on FastAPI.

Start:  python tests/e2e/apps/events_py_app.py --port 8124      (cwd = repo root)

Env: ``STEPWELL_URL`` and ``STEPWELL_MODE`` as for ``py_app.py`` (dev mode by default).

App id ``e2e-events``, serve path ``/api/inngest``, plus ``GET /healthz``.  Its functions
report what the SDK handed them, so a test can tell that a big event arrived whole:

* ``big-event`` (trigger ``e2e/events.big``): one step measures ``event.data.blob``; the run's
  output is ``{"bytes", "sha256", "measured"}``.  A ~3 MiB event still fits in the request the
  server sends (its limit is 4 MiB).
* ``big-batch`` (trigger ``e2e/events.batch``, batches of 8): one step counts the events; the
  output is ``{"count", "bytes": [...], "counted"}``.  Eight ~1 MiB events make the request
  too big, so the server sends ``use_api`` and the SDK fetches the batch
  (``/v0/runs/{id}/batch``) and the memoized step (``/v0/runs/{id}/actions``) itself.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import typing


def _configure_env() -> str:
    """Translate STEPWELL_* into the env vars the SDK itself reads."""
    origin = os.environ.get("STEPWELL_URL", "").rstrip("/")
    mode = os.environ.get("STEPWELL_MODE") or (
        "cloud" if os.environ.get("INNGEST_SIGNING_KEY") else "dev"
    )
    if origin:
        if mode == "cloud":
            os.environ["INNGEST_DEV"] = "0"
            os.environ["INNGEST_BASE_URL"] = origin
        else:
            os.environ["INNGEST_DEV"] = origin
    return mode


MODE = _configure_env()

import fastapi  # noqa: E402
import inngest  # noqa: E402
import inngest.fast_api  # noqa: E402

APP_ID = "e2e-events"
SERVE_PATH = "/api/inngest"

client = inngest.Inngest(app_id=APP_ID)


def _blob(event: inngest.Event) -> str:
    blob = event.data.get("blob", "")
    return blob if isinstance(blob, str) else ""


@client.create_function(fn_id="big-event", trigger=inngest.TriggerEvent(event="e2e/events.big"))
async def big_event(ctx: inngest.Context) -> dict[str, typing.Any]:
    blob = _blob(ctx.event)

    async def measure() -> int:
        return len(blob)

    measured = await ctx.step.run("measure", measure)
    return {
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "measured": measured,
    }


@client.create_function(
    fn_id="big-batch",
    trigger=inngest.TriggerEvent(event="e2e/events.batch"),
    batch_events=inngest.Batch(max_size=8, timeout=datetime.timedelta(seconds=10)),
    retries=0,
)
async def big_batch(ctx: inngest.Context) -> dict[str, typing.Any]:
    events = list(ctx.events)

    async def count() -> int:
        return len(events)

    counted = await ctx.step.run("count", count)
    return {"count": len(events), "bytes": [len(_blob(e)) for e in events], "counted": counted}


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [big_event, big_batch], serve_path=SERVE_PATH)


@app.get("/healthz")
async def healthz() -> dict[str, typing.Any]:
    return {"ok": True, "app_id": APP_ID, "mode": MODE}


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = p.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
