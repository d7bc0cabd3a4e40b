"""Stepwell e2e app: the official ``inngest`` Python SDK on FastAPI with ``streaming=FORCE``.

Every call is answered 201 at once; the SDK then sends keepalive spaces while the function
runs and ends the body with the wrapped reply (status, headers, body).

Start:  python tests/e2e/apps/streaming_py_app.py --port 8124   (STEPWELL_URL=<server origin>)

App id ``e2e-stream-py``, serve path ``/api/inngest``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import typing

origin = os.environ.get("STEPWELL_URL", "").rstrip("/")
if origin:
    os.environ["INNGEST_DEV"] = origin

import fastapi  # noqa: E402
import inngest  # noqa: E402
import inngest.fast_api  # noqa: E402

client = inngest.Inngest(app_id="e2e-stream-py")


@client.create_function(fn_id="slow-steps", trigger=inngest.TriggerEvent(event="e2e/stream.py"))
async def slow_steps(ctx: inngest.Context) -> dict[str, typing.Any]:
    async def slow() -> int:
        # Longer than the SDK's keepalive interval, so spaces precede the reply.
        await asyncio.sleep(float(ctx.event.data.get("seconds", 3.5)))
        return 1

    async def fail_once() -> int:
        if ctx.attempt == 0:
            raise RuntimeError("first attempt fails")
        return ctx.attempt  # the attempt that succeeded: 1

    a = await ctx.step.run("slow", slow)
    b = await ctx.step.run("fail-once", fail_once)
    return {"a": a, "b": b}


app = fastapi.FastAPI()
inngest.fast_api.serve(
    app, client, [slow_steps], serve_path="/api/inngest", streaming=inngest.Streaming.FORCE
)


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8124)
    args = p.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
