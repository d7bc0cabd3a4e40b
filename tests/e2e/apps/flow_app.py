"""Stepwell e2e app for flow control: official ``inngest`` Python SDK on FastAPI.

Same conventions as ``py_app.py`` (``STEPWELL_URL``, ``STEPWELL_MODE``, ``STEPWELL_E2E_LOG``);
app id ``e2e-flow``.  Step bodies that must overlap to show a limit record ``enter``/``exit``
lines in the execution log, from which tests compute the largest number in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import time
import typing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _log

origin = os.environ.get("STEPWELL_URL", "").rstrip("/")
if origin:
    os.environ["INNGEST_DEV"] = origin

import fastapi  # noqa: E402
import inngest  # noqa: E402
import inngest.fast_api  # noqa: E402

client = inngest.Inngest(app_id="e2e-flow")
SECOND = datetime.timedelta(seconds=1)


def _evt(name: str) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=name)


async def slow_step(ctx: inngest.Context, fn: str, seconds: float) -> float:
    """A step that holds its concurrency slot for ``seconds``, logging when it runs."""

    async def body() -> float:
        # asyncio.sleep, not time.sleep: the app must be able to run steps side by side,
        # or it would serialise them itself and hide whether the server kept its limit.
        _log.record(fn, "enter", ctx.run_id, ctx.attempt)
        await asyncio.sleep(seconds)
        _log.record(fn, "exit", ctx.run_id, ctx.attempt)
        return time.time()

    return typing.cast(float, await ctx.step.run("slow", body))


@client.create_function(
    fn_id="limited", trigger=_evt("e2e/flow.limited"), concurrency=[inngest.Concurrency(limit=2)]
)
async def limited(ctx: inngest.Context) -> float:
    return await slow_step(ctx, "limited", float(ctx.event.data.get("seconds", 0.4)))


@client.create_function(
    fn_id="keyed",
    trigger=_evt("e2e/flow.keyed"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.user")],
)
async def keyed(ctx: inngest.Context) -> float:
    return await slow_step(ctx, "keyed:" + str(ctx.event.data.get("user")), 0.4)


@client.create_function(
    fn_id="rate-limited",
    trigger=_evt("e2e/flow.rate"),
    rate_limit=inngest.RateLimit(limit=2, period=datetime.timedelta(minutes=1)),
)
async def rate_limited(ctx: inngest.Context) -> typing.Any:
    _log.record("rate-limited", "__body__", ctx.run_id, ctx.attempt)
    return ctx.event.data.get("n")


@client.create_function(
    fn_id="throttled",
    trigger=_evt("e2e/flow.throttle"),
    throttle=inngest.Throttle(limit=1, period=2 * SECOND, burst=1),
)
async def throttled(ctx: inngest.Context) -> typing.Any:
    _log.record("throttled", "__body__", ctx.run_id, ctx.attempt)
    return ctx.event.data.get("n")


@client.create_function(
    fn_id="idempotent", trigger=_evt("e2e/flow.idempotent"), idempotency="event.data.key"
)
async def idempotent(ctx: inngest.Context) -> typing.Any:
    return ctx.event.data.get("n")


@client.create_function(
    fn_id="debounced",
    trigger=_evt("e2e/flow.debounce"),
    debounce=inngest.Debounce(period=2 * SECOND, key="event.data.group"),
)
async def debounced(ctx: inngest.Context) -> typing.Any:
    return ctx.event.data.get("n")


@client.create_function(
    fn_id="batched",
    trigger=_evt("e2e/flow.batch"),
    batch_events=inngest.Batch(max_size=5, timeout=10 * SECOND),
)
async def batched(ctx: inngest.Context) -> list[typing.Any]:
    return [e.data.get("n") for e in ctx.events]


@client.create_function(
    fn_id="batched-timeout",
    trigger=_evt("e2e/flow.batch-timeout"),
    batch_events=inngest.Batch(max_size=50, timeout=2 * SECOND),
)
async def batched_timeout(ctx: inngest.Context) -> list[typing.Any]:
    return [e.data.get("n") for e in ctx.events]


@client.create_function(
    fn_id="prioritized",
    trigger=_evt("e2e/flow.priority"),
    concurrency=[inngest.Concurrency(limit=1)],
    priority=inngest.Priority(run="event.data.priority"),
)
async def prioritized(ctx: inngest.Context) -> float:
    return await slow_step(
        ctx,
        "prioritized:" + str(ctx.event.data.get("name")),
        float(ctx.event.data.get("seconds", 0.2)),
    )


@client.create_function(
    fn_id="singleton-skip",
    trigger=_evt("e2e/flow.singleton"),
    singleton=inngest.Singleton(mode="skip"),
)
async def singleton_skip(ctx: inngest.Context) -> typing.Any:
    await ctx.step.sleep("hold", 3 * SECOND)
    return ctx.event.data.get("n")


@client.create_function(
    fn_id="cancel-on",
    trigger=_evt("e2e/flow.cancel-on"),
    cancel=[inngest.Cancel(event="e2e/flow.stop", if_exp="async.data.id == event.data.id")],
)
async def cancel_on(ctx: inngest.Context) -> str:
    await ctx.step.sleep("wait", 30 * SECOND)
    return "finished"


@client.create_function(
    fn_id="start-timeout",
    trigger=_evt("e2e/flow.start-timeout"),
    concurrency=[inngest.Concurrency(limit=1)],
    timeouts=inngest.Timeouts(start=SECOND),
)
async def start_timeout(ctx: inngest.Context) -> float:
    return await slow_step(ctx, "start-timeout", 3.0)


@client.create_function(
    fn_id="finish-timeout",
    trigger=_evt("e2e/flow.finish-timeout"),
    timeouts=inngest.Timeouts(finish=SECOND),
)
async def finish_timeout(ctx: inngest.Context) -> str:
    await ctx.step.sleep("long", 10 * SECOND)
    return "finished"


@client.create_function(
    fn_id="every-minute", trigger=inngest.TriggerCron(cron="TZ=Europe/Paris * * * * *")
)
async def every_minute(ctx: inngest.Context) -> dict[str, typing.Any]:
    return {"name": ctx.event.name, "data": dict(ctx.event.data), "id": ctx.event.id}


functions: list[inngest.Function[typing.Any]] = [
    limited, keyed, rate_limited, throttled, idempotent, debounced, batched, batched_timeout,
    prioritized, singleton_skip, cancel_on, start_timeout, finish_timeout, every_minute,
]  # fmt: skip

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions, serve_path="/api/inngest")


@app.get("/healthz")
async def healthz() -> dict[str, typing.Any]:
    return {"ok": True, "app_id": "e2e-flow"}


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
