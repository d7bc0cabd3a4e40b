"""Stepwell e2e app for error shapes: official ``inngest`` Python SDK (0.5.x) on FastAPI.

Each function fails in a way that makes the SDK send one error ``code``; each has an onFailure
handler that returns what it received in the ``inngest/function.failed`` event, so a test can
read that back as the handler run's output.

Start:  python tests/e2e/apps/errors_py_app.py --port 8123        (cwd = repo root)

Env:
  STEPWELL_URL      server origin, e.g. http://127.0.0.1:8288 (required; dev mode, no keys)

App id ``errors-py``, serve path ``/api/inngest``; slugs ``errors-py-<fn id>``, onFailure
handlers ``errors-py-<fn id>-failure``.  Triggers: ``errors/py.<fn id>``; every event's
``data.message`` (when given) is the message of the error raised.

  raise             the body raises ``MyError``                       -> code "unknown"
  step-fails        a step raises ``ValueError`` (no retries)         -> code "step_errored"
  non-retriable     a step raises ``NonRetriableError`` (retries=2)   -> "non_retriable_error"
  unserializable    a step returns an object JSON cannot encode       -> "output_unserializable"
  unexpected-step   a step appears only when a step is targeted       -> "step_unexpected"
  invoke-timeout    invokes ``slow`` (sleeps 60s) with a 1s timeout   -> "step_errored", null stack
"""

from __future__ import annotations

import argparse
import datetime
import os
import typing

_origin = os.environ.get("STEPWELL_URL", "").rstrip("/")
if _origin:
    os.environ["INNGEST_DEV"] = _origin

import fastapi  # noqa: E402
import inngest  # noqa: E402
import inngest.fast_api  # noqa: E402

APP_ID = "errors-py"
SERVE_PATH = "/api/inngest"

client = inngest.Inngest(app_id=APP_ID)


class MyError(Exception):
    pass


async def received(ctx: inngest.Context) -> dict[str, typing.Any]:
    """onFailure: what the ``inngest/function.failed`` event brought, as the handler's output."""
    data = ctx.event.data
    return {
        "event_name": ctx.event.name,
        "run_id": data.get("run_id"),
        "function_id": data.get("function_id"),
        "error": data.get("error"),
        "result": data.get("result"),
    }


def _message(ctx: inngest.Context, default: str) -> str:
    return str(ctx.event.data.get("message") or default)


def _fn(fn_id: str, retries: int = 0) -> typing.Any:
    return client.create_function(
        fn_id=fn_id,
        trigger=inngest.TriggerEvent(event=f"errors/py.{fn_id}"),
        retries=retries,
        on_failure=received,
    )


@_fn("raise")
async def raises(ctx: inngest.Context) -> None:
    raise MyError(_message(ctx, "plain raise"))


@_fn("step-fails")
async def step_fails(ctx: inngest.Context) -> None:
    message = _message(ctx, "step broke")

    async def boom() -> None:
        raise ValueError(message)

    await ctx.step.run("boom", boom)


@_fn("non-retriable", retries=2)
async def non_retriable(ctx: inngest.Context) -> None:
    message = _message(ctx, "stop here")

    async def boom() -> None:
        raise inngest.NonRetriableError(message, quiet=True)

    await ctx.step.run("boom", boom)


@_fn("unserializable")
async def unserializable(ctx: inngest.Context) -> None:
    class Opaque:
        pass

    async def step_1() -> Opaque:
        return Opaque()

    await ctx.step.run("step_1", step_1)  # type: ignore[arg-type]


@_fn("unexpected-step")
async def unexpected_step(ctx: inngest.Context) -> None:
    async def nothing() -> None:
        return None

    # A step the SDK finds only when the server targets one of the parallel steps.
    if ctx.step._target_hashed_id is not None:
        await ctx.step.run("unexpected", nothing)
    await ctx.group.parallel(
        (
            lambda: ctx.step.run("parallel_1", nothing),
            lambda: ctx.step.run("parallel_2", nothing),
        )
    )


@client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="errors/py.never"))
async def slow(ctx: inngest.Context) -> str:
    await ctx.step.sleep("nap", datetime.timedelta(seconds=60))
    return "woke"


@_fn("invoke-timeout")
async def invoke_timeout(ctx: inngest.Context) -> None:
    await ctx.step.invoke("call-slow", function=slow, timeout=datetime.timedelta(seconds=1))


functions: list[inngest.Function[typing.Any]] = [
    raises, step_fails, non_retriable, unserializable, unexpected_step, slow, invoke_timeout,
]  # fmt: skip

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions, serve_path=SERVE_PATH)


@app.get("/healthz")
async def healthz() -> dict[str, typing.Any]:
    return {"ok": True, "app_id": APP_ID}


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = p.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
