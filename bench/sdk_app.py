"""Bench SDK app: the official ``inngest`` Python SDK on FastAPI, functions of K trivial steps.

    STEPWELL_URL=http://127.0.0.1:8288 python -m bench.sdk_app --port 8123

Functions ``k1``, ``k5``, ``k20`` (slugs ``bench-py-k<K>``, triggers ``bench/k<K>``) run K
sequential ``step.run`` calls whose bodies only return their index.  The app keeps its own
timestamps in memory (``time.time_ns()``, the same clock as the benchmark driver):

* the arrival of the first SDK call of each run (ASGI middleware, keyed by ``X-Run-ID``);
* the start of every step body (run id, step index) — step→next-step gaps come from these.

``GET /bench/log`` returns them (and this process's CPU time); ``?reset=1`` clears them.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import typing

os.environ.setdefault("INNGEST_DEV", os.environ.get("STEPWELL_URL", "http://127.0.0.1:8288"))

import fastapi
import inngest
import inngest.fast_api

APP_ID = "bench-py"
SERVE_PATH = "/api/inngest"
KS = (1, 5, 20)

client = inngest.Inngest(app_id=APP_ID, is_production=False)


class Log:
    def __init__(self) -> None:
        self.first_call: dict[str, int] = {}
        self.steps: list[tuple[str, int, int]] = []
        self.calls = 0


LOG = Log()


def make_function(k: int) -> inngest.Function[typing.Any]:
    @client.create_function(fn_id=f"k{k}", trigger=inngest.TriggerEvent(event=f"bench/k{k}"))
    async def fn(ctx: inngest.Context) -> int:
        total = 0
        for i in range(k):

            async def body(i: int = i) -> int:
                LOG.steps.append((ctx.run_id, i, time.time_ns()))
                return i

            total += await ctx.step.run(f"s{i}", body)
        return total

    return fn


functions = [make_function(k) for k in KS]
api = fastapi.FastAPI()
inngest.fast_api.serve(api, client, functions, serve_path=SERVE_PATH)


@api.get("/bench/log")
async def bench_log(reset: int = 0) -> dict[str, typing.Any]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "first_call": LOG.first_call,
        "steps": LOG.steps,
        "calls": LOG.calls,
        "cpu_s": ru.ru_utime + ru.ru_stime,
    }
    if reset:
        LOG.__init__()  # type: ignore[misc]
    return out


@api.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


async def app(scope: dict[str, typing.Any], receive: typing.Any, send: typing.Any) -> None:
    """Timestamp SDK calls on arrival, before the framework and the SDK do any work."""
    if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == SERVE_PATH:
        now = time.time_ns()
        LOG.calls += 1
        for name, value in scope["headers"]:
            if name == b"x-run-id":
                LOG.first_call.setdefault(value.decode(), now)
                break
    await api(scope, receive, send)


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
