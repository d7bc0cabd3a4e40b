"""Fault-test app: the official ``inngest`` Python SDK on FastAPI, with slow steps.

Start: ``python tests/faults/apps/slow_app.py --port 8123`` with ``STEPWELL_URL`` (server
origin, dev mode) and optionally ``FAULTS_LOG`` (a JSON-lines file: one ``enter`` and one
``exit`` line per step execution, so a test can see steps in flight and count executions).

App id ``faults``; function ``faults-slow`` (event ``faults/slow``, ``data.seconds`` per step,
``data.n``): step ``a``, a short ``step.sleep``, step ``b``; returns ``{"a", "b", "n"}``.
Function ``faults-picky`` (event ``faults/big``) has a trigger expression whose cost grows with
the event (``exists`` over ``data.items``): the hostile-load test's slow-CEL trigger.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import time
import typing

origin = os.environ.get("STEPWELL_URL", "").rstrip("/")
if origin:
    os.environ["INNGEST_DEV"] = origin

import fastapi  # noqa: E402
import inngest  # noqa: E402
import inngest.fast_api  # noqa: E402

client = inngest.Inngest(app_id="faults")


def record(run_id: str, step: str, phase: str, attempt: int) -> None:
    path = os.environ.get("FAULTS_LOG")
    if not path:
        return
    line = {"run_id": run_id, "step": step, "phase": phase, "attempt": attempt, "t": time.time()}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())  # one write: lines never interleave
    finally:
        os.close(fd)


@client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="faults/slow"), retries=4)
async def slow(ctx: inngest.Context) -> dict[str, typing.Any]:
    seconds = float(ctx.event.data.get("seconds", 0.5))
    n = int(ctx.event.data.get("n", 0))

    def step(name: str, value: int) -> typing.Callable[[], typing.Awaitable[int]]:
        async def body() -> int:
            record(ctx.run_id, name, "enter", ctx.attempt)
            await asyncio.sleep(seconds)  # async: many steps in flight at once
            record(ctx.run_id, name, "exit", ctx.attempt)
            return value

        return body

    a = await ctx.step.run("a", step("a", n + 1))
    await ctx.step.sleep("nap", datetime.timedelta(milliseconds=300))
    b = await ctx.step.run("b", step("b", a * 2))
    return {"a": a, "b": b, "n": n}


@client.create_function(
    fn_id="picky",
    trigger=inngest.TriggerEvent(
        event="faults/big", expression="event.data.items.exists(x, x == -1)"
    ),
)
async def picky(ctx: inngest.Context) -> str:
    return "matched"


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [slow, picky], serve_path="/api/inngest")


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8002)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
