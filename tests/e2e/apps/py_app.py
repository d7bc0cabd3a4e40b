"""Stepwell e2e app: official ``inngest`` Python SDK (0.5.x) on FastAPI.

Start:  python tests/e2e/apps/py_app.py --port 8123
   or:  uvicorn tests.e2e.apps.py_app:app --port 8123      (cwd = repo root)

Env:
  STEPWELL_URL      server origin, e.g. http://127.0.0.1:8288 (required)
  STEPWELL_MODE     "dev" (INNGEST_DEV=<origin>, no keys) or "cloud"
                    (INNGEST_DEV=0, INNGEST_BASE_URL=<origin>, signed); default:
                    "cloud" if INNGEST_SIGNING_KEY is set, else "dev"
  INNGEST_SIGNING_KEY / INNGEST_EVENT_KEY   keys for cloud mode (read by SDK)
  STEPWELL_E2E_LOG  JSON-lines execution log (see _log.py)

App id ``e2e-py``, serve path ``/api/inngest``; function slugs are
``e2e-py-<fn id>`` (on_failure handler: ``e2e-py-always-fails-failure``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import typing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _log


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

APP_ID = "e2e-py"
SERVE_PATH = "/api/inngest"
MIB = 1024 * 1024

client = inngest.Inngest(app_id=APP_ID)


async def run_step(
    ctx: inngest.Context,
    fn: str,
    step_id: str,
    body: typing.Callable[[], typing.Any],
) -> typing.Any:
    """ctx.step.run whose body is recorded in the execution log."""

    async def wrapped() -> typing.Any:
        _log.record(fn, step_id, ctx.run_id, ctx.attempt)
        return body()

    return await ctx.step.run(step_id, wrapped)


def _ev(e: inngest.Event | None) -> dict[str, typing.Any] | None:
    return None if e is None else e.model_dump(mode="json")


def _err(e: BaseException) -> dict[str, typing.Any]:
    return {
        "error": getattr(e, "message", None) or str(e),
        "name": getattr(e, "name", None) or type(e).__name__,
        "type": type(e).__name__,
    }


def _evt(event: str, expression: str | None = None) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=event, expression=expression)


# --- basic steps ---------------------------------------------------------


@client.create_function(fn_id="sequential", trigger=_evt("e2e/sequential"))
async def sequential(ctx: inngest.Context) -> dict[str, typing.Any]:
    base = int(ctx.event.data.get("base", 0))
    a = await run_step(ctx, "sequential", "a", lambda: base + 1)
    b = await run_step(ctx, "sequential", "b", lambda: a + 1)
    c = await run_step(ctx, "sequential", "c", lambda: b * 10)
    return {"a": a, "b": b, "c": c, "sum": a + b + c}


@client.create_function(fn_id="flaky", trigger=_evt("e2e/flaky"), retries=2)
async def flaky(ctx: inngest.Context) -> dict[str, typing.Any]:
    # Fails while ctx.attempt < fail_times (default 1 => fails once).
    fail_times = int(ctx.event.data.get("fail_times", 1))

    def body() -> dict[str, typing.Any]:
        if ctx.attempt < fail_times:
            raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
        return {"ok": True, "attempt": ctx.attempt}

    return await run_step(ctx, "flaky", "flaky-step", body)


@client.create_function(fn_id="non-retriable", trigger=_evt("e2e/non-retriable"), retries=3)
async def non_retriable(ctx: inngest.Context) -> None:
    def body() -> None:
        raise inngest.NonRetriableError("nope")

    await run_step(ctx, "non-retriable", "boom", body)


async def always_fails_handler(ctx: inngest.Context) -> dict[str, typing.Any]:
    # ctx.event is the inngest/function.failed event.
    _log.record("always-fails-failure", "on_failure", ctx.run_id, ctx.attempt)
    data = ctx.event.data
    err = data.get("error") or {}
    return {
        "handled": True,
        "event_name": ctx.event.name,
        "original_function_id": data.get("function_id"),
        "original_run_id": data.get("run_id"),
        "original_error": err.get("message") if isinstance(err, dict) else err,
        "original_event": data.get("event"),
    }


@client.create_function(
    fn_id="always-fails",
    trigger=_evt("e2e/always-fails"),
    retries=1,
    on_failure=always_fails_handler,
)
async def always_fails(ctx: inngest.Context) -> None:
    msg = str(ctx.event.data.get("message", "always fails"))
    if ctx.event.data.get("where") == "body":  # function-level error
        _log.record("always-fails", "__body__", ctx.run_id, ctx.attempt)
        raise RuntimeError(msg)

    def body() -> None:
        raise RuntimeError(msg)

    await run_step(ctx, "always-fails", "fail", body)


@client.create_function(fn_id="retry-after", trigger=_evt("e2e/retry-after"), retries=2)
async def retry_after(ctx: inngest.Context) -> dict[str, typing.Any]:
    secs = int(ctx.event.data.get("seconds", 2))

    def body() -> dict[str, typing.Any]:
        if ctx.attempt == 0:
            raise inngest.RetryAfterError("later", datetime.timedelta(seconds=secs))
        return {"ok": True, "attempt": ctx.attempt, "t": time.time()}

    return await run_step(ctx, "retry-after", "later", body)


# --- parallelism ---------------------------------------------------------


@client.create_function(fn_id="parallel-wait", trigger=_evt("e2e/parallel"))
async def parallel_wait(ctx: inngest.Context) -> dict[str, typing.Any]:
    res = await ctx.group.parallel(
        tuple(
            (lambda i=i: run_step(ctx, "parallel-wait", f"p{i}", lambda: i * 10)) for i in (1, 2, 3)
        )
    )
    after = await run_step(ctx, "parallel-wait", "after", lambda: sum(res))
    return {"results": list(res), "after": after}


@client.create_function(fn_id="parallel-race", trigger=_evt("e2e/parallel-race"))
async def parallel_race(ctx: inngest.Context) -> dict[str, typing.Any]:
    # Each branch is 2 sequential steps; race mode lets branches advance
    # independently (discovery after every completed step).
    async def branch(i: int) -> str:
        x = await run_step(ctx, "parallel-race", f"r{i}a", lambda: f"{i}a")
        return await run_step(ctx, "parallel-race", f"r{i}b", lambda: x + "b")

    res = await ctx.group.parallel(
        tuple((lambda i=i: branch(i)) for i in (1, 2, 3)),
        parallel_mode=inngest.ParallelMode.RACE,
    )
    return {"results": list(res)}


# --- sleeps, waits -------------------------------------------------------


@client.create_function(fn_id="sleeper", trigger=_evt("e2e/sleep"))
async def sleeper(ctx: inngest.Context) -> dict[str, typing.Any]:
    secs = float(ctx.event.data.get("seconds", 2))
    t0 = await run_step(ctx, "sleeper", "a", time.time)
    await ctx.step.sleep("nap", datetime.timedelta(seconds=secs))
    t1 = await run_step(ctx, "sleeper", "b", time.time)
    return {"a": t0, "b": t1, "elapsed": t1 - t0, "requested": secs}


@client.create_function(fn_id="sleep-until", trigger=_evt("e2e/sleep-until"))
async def sleep_until(ctx: inngest.Context) -> dict[str, typing.Any]:
    until_s = ctx.event.data.get("until")
    if isinstance(until_s, str):
        until = datetime.datetime.fromisoformat(until_s.replace("Z", "+00:00"))
    else:
        until = datetime.datetime.fromtimestamp(ctx.event.ts / 1000 + 2, tz=datetime.UTC)
    await ctx.step.sleep_until("until", until)
    woke = await run_step(ctx, "sleep-until", "woke", time.time)
    return {"until": until.isoformat(), "woke": woke}


@client.create_function(fn_id="waiter", trigger=_evt("e2e/wait"))
async def waiter(ctx: inngest.Context) -> dict[str, typing.Any]:
    secs = float(ctx.event.data.get("timeout", 5))
    matched = await ctx.step.wait_for_event(
        "wait",
        event="e2e/wait.reply",
        if_exp="async.data.id == event.data.id",
        timeout=datetime.timedelta(seconds=secs),
    )
    return {"matched": _ev(matched)}


@client.create_function(
    fn_id="cancellable",
    trigger=_evt("e2e/cancellable"),
    cancel=[inngest.Cancel(event="e2e/cancel", if_exp="async.data.id == event.data.id")],
)
async def cancellable(ctx: inngest.Context) -> dict[str, typing.Any]:
    a = await run_step(ctx, "cancellable", "a", lambda: "a")
    await ctx.step.sleep("long-nap", datetime.timedelta(seconds=60))
    b = await run_step(ctx, "cancellable", "b", lambda: "b")
    return {"a": a, "b": b}


# --- invoke --------------------------------------------------------------


@client.create_function(fn_id="invokee", trigger=_evt("e2e/invokee"))
async def invokee(ctx: inngest.Context) -> dict[str, typing.Any]:
    n = int(ctx.event.data.get("n", 0))
    return await run_step(ctx, "invokee", "double", lambda: {"doubled": n * 2})


@client.create_function(fn_id="invokee-fails", trigger=_evt("e2e/invokee-fails"), retries=0)
async def invokee_fails(ctx: inngest.Context) -> None:
    _log.record("invokee-fails", "__body__", ctx.run_id, ctx.attempt)
    raise inngest.NonRetriableError("invokee failed on purpose")


@client.create_function(fn_id="invokee-slow", trigger=_evt("e2e/invokee-slow"))
async def invokee_slow(ctx: inngest.Context) -> dict[str, typing.Any]:
    await ctx.step.sleep("slow", datetime.timedelta(seconds=10))
    return {"slow": True}


@client.create_function(fn_id="invoker", trigger=_evt("e2e/invoke"))
async def invoker(ctx: inngest.Context) -> dict[str, typing.Any]:
    n = int(ctx.event.data.get("n", 21))
    res = await ctx.step.invoke("call", function=invokee, data={"n": n})
    return {"result": res}


@client.create_function(fn_id="invoker-fails", trigger=_evt("e2e/invoke-fails"))
async def invoker_fails(ctx: inngest.Context) -> dict[str, typing.Any]:
    try:
        res = await ctx.step.invoke("call", function=invokee_fails, data={})
    except Exception as e:  # inngest.StepError
        return {"caught": _err(e)}
    return {"result": res}


@client.create_function(fn_id="invoker-timeout", trigger=_evt("e2e/invoke-timeout"))
async def invoker_timeout(ctx: inngest.Context) -> dict[str, typing.Any]:
    try:
        res = await ctx.step.invoke(
            "call",
            function=invokee_slow,
            data={},
            timeout=datetime.timedelta(seconds=2),
        )
    except Exception as e:  # inngest.StepError (InngestInvokeTimeoutError)
        return {"caught": _err(e)}
    return {"result": res}


@client.create_function(fn_id="invoker-missing", trigger=_evt("e2e/invoke-missing"))
async def invoker_missing(ctx: inngest.Context) -> dict[str, typing.Any]:
    try:
        res = await ctx.step.invoke_by_id("call", app_id=APP_ID, function_id="no-such-fn")
    except Exception as e:  # inngest.StepError: the server could not find the function
        return {"caught": _err(e)}
    return {"result": res}


# --- events --------------------------------------------------------------


@client.create_function(fn_id="sender", trigger=_evt("e2e/send"))
async def sender(ctx: inngest.Context) -> dict[str, typing.Any]:
    ids = await ctx.step.send_event(
        "send",
        inngest.Event(
            name="e2e/sent",
            data={"from_run": ctx.run_id, "value": ctx.event.data.get("value")},
        ),
    )
    return {"ids": ids}


@client.create_function(fn_id="on-sent", trigger=_evt("e2e/sent"))
async def on_sent(ctx: inngest.Context) -> dict[str, typing.Any]:
    _log.record("on-sent", "__body__", ctx.run_id, ctx.attempt)
    return dict(ctx.event.data)


@client.create_function(fn_id="multi-trigger", trigger=[_evt("e2e/multi.a"), _evt("e2e/multi.b")])
async def multi_trigger(ctx: inngest.Context) -> dict[str, typing.Any]:
    _log.record("multi-trigger", "__body__", ctx.run_id, ctx.attempt)
    return {"name": ctx.event.name, "data": dict(ctx.event.data)}


@client.create_function(fn_id="wildcard", trigger=_evt("e2e/wild.*"))
async def wildcard(ctx: inngest.Context) -> dict[str, typing.Any]:
    _log.record("wildcard", "__body__", ctx.run_id, ctx.attempt)
    return {"name": ctx.event.name}


@client.create_function(fn_id="expression", trigger=_evt("e2e/expr", "event.data.plan == 'pro'"))
async def expression(ctx: inngest.Context) -> dict[str, typing.Any]:
    _log.record("expression", "__body__", ctx.run_id, ctx.attempt)
    return {"plan": ctx.event.data.get("plan")}


@client.create_function(fn_id="no-steps", trigger=_evt("e2e/no-steps"))
async def no_steps(ctx: inngest.Context) -> dict[str, typing.Any]:
    _log.record("no-steps", "__body__", ctx.run_id, ctx.attempt)
    return {"hello": ctx.event.data.get("name")}


@client.create_function(fn_id="big-state", trigger=_evt("e2e/big"))
async def big_state(ctx: inngest.Context) -> dict[str, typing.Any]:
    # 6 x 1 MiB of step output => > 4 MiB of state => server must use use_api.
    total = 0
    for i in range(6):
        s = await run_step(ctx, "big-state", f"chunk-{i}", lambda i=i: str(i) * MIB)
        total += len(s)
    return {"total": total, "steps": 6}


functions: list[inngest.Function[typing.Any]] = [
    sequential, flaky, non_retriable, always_fails, retry_after,
    parallel_wait, parallel_race, sleeper, sleep_until, waiter, cancellable,
    invokee, invokee_fails, invokee_slow, invoker, invoker_fails,
    invoker_timeout, invoker_missing, sender, on_sent, multi_trigger, wildcard, expression,
    no_steps, big_state,
]  # fmt: skip

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions, serve_path=SERVE_PATH)


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
