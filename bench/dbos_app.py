"""DBOS side of the side-by-side: K-step workflows on the same Postgres (run as a subprocess).

    python -m bench.dbos_app --db URL --ks 1,5,20 --n 1000 --sequential 20 --concurrency 32

Each workflow runs K ``@DBOS.step()`` calls that only return their index (the same trivial
work as the Stepwell functions).  For each K: ``n`` workflows submitted at once,
``concurrency`` in flight (steps/s, latency p50/p99 from submission), then ``sequential``
workflows one at a time (unloaded latency).  Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys
import time
from typing import Any

from dbos import DBOS, DBOSConfig


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))]


@DBOS.step()
async def bench_step(i: int) -> int:
    return i


@DBOS.workflow()
async def bench_workflow(k: int) -> int:
    total = 0
    for i in range(k):
        total += await bench_step(i)
    return total


async def timed(k: int, t0: float | None = None) -> float:
    """Latency of one workflow, from ``t0`` (its submission) or from now."""
    t0 = time.perf_counter() if t0 is None else t0
    result = await bench_workflow(k)
    assert result == k * (k - 1) // 2
    return (time.perf_counter() - t0) * 1000


async def burst(k: int, n: int, concurrency: int, max_seconds: float) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []
    stop = time.monotonic() + max_seconds

    async def one() -> None:
        # Latency counts from the burst's start, as on the Stepwell side where all events are
        # posted at once and wait in the queue for one of the 32 worker slots.
        async with sem:
            if time.monotonic() < stop:
                lat.append(await timed(k, t0))

    c0, t0 = cpu(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - t0
    return {
        "k": k,
        "completed": len(lat),
        "seconds": elapsed,
        "steps_per_s": len(lat) * k / elapsed,
        "runs_per_s": len(lat) / elapsed,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "cpu_ms_per_step": (cpu() - c0) / max(1, len(lat) * k) * 1000,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"burst": {}, "sequential": {}}
    for k in args.ks:
        await timed(k)  # warm-up
        out["burst"][k] = await burst(k, args.n, args.concurrency, args.max_seconds)
        lat = [await timed(k) for _ in range(args.sequential)]
        out["sequential"][k] = {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "n": len(lat)}
        print(f"dbos K={k}: {out['burst'][k]}", file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--ks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 20])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--sequential", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-seconds", type=float, default=120)
    a = p.parse_args()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    config: DBOSConfig = {
        "name": "stepwell-bench",
        "system_database_url": a.db,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        result = asyncio.run(main(a))
    finally:
        DBOS.destroy()
    print(json.dumps(result))
