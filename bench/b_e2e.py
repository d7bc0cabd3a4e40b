"""End to end with the official SDK: ``bench/sdk_app.py`` (inngest + FastAPI) on Stepwell.

For K ∈ {1, 5, 20} sequential trivial steps:

* **burst** — N events posted in arrays of 100: throughput (steps/s) and event→completion
  p50/p99 (send time → the run's ``ended_at`` in the runs view);
* **paced** — single events at 10 events/s: event→first-SDK-call p50/p99 (the SDK app stamps a
  call on arrival, before FastAPI), event→completion, and step→next-step gaps between the
  starts of consecutive step bodies (the SDK app's own timestamps);
* per-step overhead = (latency(K) - latency(1)) / (K - 1), from p50s, burst and paced.

Same-run baselines: the SDK app called directly (no server) with the request Stepwell would
send — its p50 latency for one call, and its calls/s at 32 concurrent requests (what the
server's 32 workers could at best get out of it) — and the ceiling's durable-transition latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg

from bench.b_ceiling import ensure_ceiling
from bench.common import (
    PY,
    BenchResult,
    Ctx,
    Proc,
    clean_env,
    free_port,
    pct,
    scratch_db,
    spawn,
    stepwell_server,
    wait_queue_empty,
)

KS = (1, 5, 20)
SLUG = "bench-py-k{}"
RUNS_OF_TAG = """
SELECT r.run_id, (e.data->>'seq')::int, r.started_at, r.ended_at, r.status
  FROM runs r JOIN events e ON e.internal_id = r.event_ids[1]
 WHERE r.function_slug = %s AND e.data->>'tag' = %s
"""


@contextlib.contextmanager
def sdk_app(ctx: Ctx, server_url: str) -> Iterator[Proc]:
    port = free_port()
    env = clean_env(STEPWELL_URL=server_url, INNGEST_DEV=server_url)
    args = [PY, "-m", "bench.sdk_app", "--port", str(port)]
    with spawn(args, port=port, log=ctx.log_dir / "e2e-sdk.log", health="/healthz", env=env) as p:
        yield p


def direct_request(k: int, run_id: str) -> dict[str, Any]:
    event = {
        "name": f"bench/k{k}",
        "data": {},
        "id": run_id,
        "ts": int(time.time() * 1000),
        "user": {},
    }
    return {
        "event": event,
        "events": [event],
        "steps": {},
        "defers": {},
        "ctx": {
            "run_id": run_id,
            "env": "",
            "step_id": "step",
            "attempt": 0,
            "max_attempts": 4,
            "stack": {"stack": [], "current": 0},
            "qi_id": "1",
            "request_id": "",
            "generation_id": 1,
            "job_id": "x",
            "disable_immediate_execution": False,
            "use_api": False,
        },
        "version": -1,
        "use_api": False,
    }


async def _direct(app_url: str, seconds: float, conc: int, max_calls: int) -> dict[str, Any]:
    """The SDK app alone: latency of one call (sequential) and calls/s at ``conc`` in flight."""
    url = f"{app_url}/api/inngest?fnId={SLUG.format(1)}&stepId=step"
    headers = {"X-Inngest-Server-Kind": "dev", "X-Inngest-Req-Version": "-1"}
    lat: list[float] = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=conc), timeout=30) as http:
        for i in range(min(100, max_calls)):
            t0 = time.perf_counter()
            r = await http.post(url, json=direct_request(1, f"direct-{i}"), headers=headers)
            lat.append(time.perf_counter() - t0)
            if r.status_code != 206:
                raise RuntimeError(f"direct SDK call: {r.status_code} {r.text[:300]}")
        count = 0
        stop = time.monotonic() + seconds

        async def loop(w: int) -> None:
            nonlocal count
            while time.monotonic() < stop and count < max_calls:
                await http.post(url, json=direct_request(1, f"direct-{w}-{count}"), headers=headers)
                count += 1

        t0 = time.monotonic()
        await asyncio.gather(*(loop(w) for w in range(conc)))
        elapsed = time.monotonic() - t0
    return {
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "calls_per_s": count / elapsed,
        "calls": count,
    }


def send_burst(server: str, k: int, n: int) -> dict[int, int]:
    sent: dict[int, int] = {}
    with httpx.Client(timeout=60) as http:
        for start in range(0, n, 100):
            seqs = range(start, min(n, start + 100))
            now = time.time_ns()
            for s in seqs:
                sent[s] = now
            r = http.post(
                f"{server}/e/bench",
                json=[{"name": f"bench/k{k}", "data": {"seq": s, "tag": "burst"}} for s in seqs],
            )
            r.raise_for_status()
    return sent


def send_paced(server: str, k: int, n: int, rate: float) -> dict[int, int]:
    sent: dict[int, int] = {}
    start = time.monotonic()
    with httpx.Client(timeout=60) as http:
        for s in range(n):
            delay = start + s / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[s] = time.time_ns()
            r = http.post(
                f"{server}/e/bench",
                json={"name": f"bench/k{k}", "data": {"seq": s, "tag": "paced"}},
            )
            r.raise_for_status()
    return sent


def wait_runs(
    conn: psycopg.Connection[Any], k: int, tag: str, n: int, timeout: float
) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        rows = conn.execute(RUNS_OF_TAG, (SLUG.format(k), tag)).fetchall()
        if sum(1 for r in rows if r[4] in ("Completed", "Failed", "Cancelled")) >= n:
            break
        time.sleep(0.1)
    return rows


def latencies(rows: list[tuple[Any, ...]], sent: dict[int, int]) -> list[float]:
    """event → completion, ms, for completed runs."""
    return [
        (r[3].timestamp() * 1e9 - sent[r[1]]) / 1e6 for r in rows if r[4] == "Completed" and r[3]
    ]


def run(ctx: Ctx, res: BenchResult) -> None:
    ceil = ensure_ceiling(ctx)
    n = 50 if ctx.quick else 1000
    paced = 10 if ctx.quick else 100
    rate = 10.0
    out: dict[str, Any] = {"n": n, "paced": paced, "rate": rate, "burst": {}, "paced_runs": {}}
    res.details.update(out)
    with (
        scratch_db(ctx, "e2e") as url,
        stepwell_server(ctx, url, "e2e") as srv,
        sdk_app(ctx, srv.url) as app,
    ):
        r = httpx.put(f"{app.url}/api/inngest", timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"sync failed: {r.status_code} {r.text}")
        direct = asyncio.run(_direct(app.url, 1.0 if ctx.quick else 3.0, 32, 20_000))
        out["direct_sdk"] = direct
        ctx.log(
            f"e2e: SDK direct p50 {direct['p50_ms']:.2f} ms, {direct['calls_per_s']:.0f} calls/s"
        )
        httpx.get(f"{app.url}/bench/log?reset=1", timeout=30)
        with psycopg.connect(url, autocommit=True) as conn:
            # warm-up: one run of each function
            for k in KS:
                send_paced(srv.url, k, 1, rate)
            for k in KS:
                wait_runs(conn, k, "paced", 1, 60)
            conn.execute("DELETE FROM events WHERE data->>'tag' = 'paced'")
            httpx.get(f"{app.url}/bench/log?reset=1", timeout=30)
            # burst
            for k in KS:
                cpu_s0, sdk0 = (
                    srv.cpu(),
                    httpx.get(f"{app.url}/bench/log?reset=1", timeout=30).json()["cpu_s"],
                )
                sent = send_burst(srv.url, k, n)
                rows = wait_runs(conn, k, "burst", n, max(60.0, n * (k + 1) / 20))
                lat = latencies(rows, sent)
                ends = [r[3].timestamp() for r in rows if r[4] == "Completed"]
                elapsed = max(ends) - min(sent.values()) / 1e9 if ends else float("nan")
                log = httpx.get(f"{app.url}/bench/log?reset=1", timeout=30).json()
                b = {
                    "completed": len(lat),
                    "p50_ms": pct(lat, 50),
                    "p99_ms": pct(lat, 99),
                    "steps_per_s": len(lat) * k / elapsed,
                    "runs_per_s": len(lat) / elapsed,
                    "server_cpu_ms_per_step": (srv.cpu() - cpu_s0) / max(1, len(lat) * k) * 1000,
                    "sdk_cpu_ms_per_step": (log["cpu_s"] - sdk0) / max(1, len(lat) * k) * 1000,
                    "sdk_calls": log["calls"],
                }
                out["burst"][k] = b
                wait_queue_empty(url, 120)  # its lifecycle events too, before the next phase
                ctx.log(f"e2e burst K={k}: {b['steps_per_s']:.0f} steps/s, p50 {b['p50_ms']} ms")
            # paced
            for k in KS:
                sent = send_paced(srv.url, k, paced, rate)
                rows = wait_runs(conn, k, "paced", paced, 120)
                wait_queue_empty(url, 60)
                log = httpx.get(f"{app.url}/bench/log?reset=1", timeout=30).json()
                seq_of = {r[0]: r[1] for r in rows}
                first = [
                    (t - sent[seq_of[rid]]) / 1e6
                    for rid, t in log["first_call"].items()
                    if rid in seq_of
                ]
                by_run: dict[str, list[tuple[int, int]]] = {}
                for rid, i, t in log["steps"]:
                    by_run.setdefault(rid, []).append((i, t))
                gaps = []
                for steps in by_run.values():
                    firsts: dict[int, int] = {}
                    for i, t in steps:
                        firsts.setdefault(i, t)  # a step body runs once; keep its first start
                    ts = [firsts[i] for i in sorted(firsts)]
                    gaps += [(b2 - a2) / 1e6 for a2, b2 in itertools.pairwise(ts)]
                lat = latencies(rows, sent)
                out["paced_runs"][k] = {
                    "completed": len(lat),
                    "p50_ms": pct(lat, 50),
                    "p99_ms": pct(lat, 99),
                    "first_call_p50_ms": pct(first, 50),
                    "first_call_p99_ms": pct(first, 99),
                    "first_call_n": len(first),
                    "step_gap_p50_ms": pct(gaps, 50),
                    "step_gap_p99_ms": pct(gaps, 99),
                    "step_gaps": len(gaps),
                }
                ctx.log(f"e2e paced K={k}: {out['paced_runs'][k]}")
    ctx.shared["e2e"] = out
    report(ctx, res, out, ceil)


def report(ctx: Ctx, res: BenchResult, out: dict[str, Any], ceil: dict[str, Any]) -> None:
    d = out["direct_sdk"]
    sdk_p50 = d["p50_ms"]
    tx1 = ceil["tx1"]["mean_ms"]
    for k in KS:
        b = out["burst"][k]
        ideal = d["calls_per_s"] * k / (k + 1)
        res.add(
            f"K={k} burst throughput ({out['n']} events)",
            b["steps_per_s"],
            "steps/s",
            baseline=ideal,
            baseline_label="SDK alone @32 in flight x K/(K+1)",
        )
        res.add(
            f"K={k} burst event→completion p50",
            b["p50_ms"],
            "ms",
            baseline=sdk_p50 * (k + 1),
            baseline_label="(K+1) x SDK-alone call p50",
        )
        res.add(
            f"K={k} burst event→completion p99",
            b["p99_ms"],
            "ms",
            baseline=b["p50_ms"],
            baseline_label="p50",
        )
        res.add(
            f"K={k} server CPU per step (burst)",
            b["server_cpu_ms_per_step"],
            "ms",
            baseline=b["sdk_cpu_ms_per_step"],
            baseline_label="SDK app CPU per step",
        )
    for mode, src in (("burst", out["burst"]), ("paced 10/s", out["paced_runs"])):
        for k in (5, 20):
            if src[k]["p50_ms"] is None or src[1]["p50_ms"] is None:
                continue
            over = (src[k]["p50_ms"] - src[1]["p50_ms"]) / (k - 1)
            res.add(
                f"per-step overhead, {mode}, (p50(K={k}) - p50(K=1))/{k - 1}",
                over,
                "ms",
                baseline=sdk_p50,
                baseline_label="SDK-alone call p50",
            )
    for k in KS:
        p = out["paced_runs"][k]
        if k == 1:
            res.add(
                "event→first SDK call p50 @10 events/s",
                p["first_call_p50_ms"],
                "ms",
                baseline=tx1,
                baseline_label="ceiling tx latency @1",
                target="≤15 ms",
                ok=p["first_call_p50_ms"] is not None and p["first_call_p50_ms"] <= 15,
            )
            res.add(
                "event→first SDK call p99 @10 events/s",
                p["first_call_p99_ms"],
                "ms",
                baseline=tx1,
                baseline_label="ceiling tx latency @1",
                target="≤100 ms",
                ok=p["first_call_p99_ms"] is not None and p["first_call_p99_ms"] <= 100,
            )
        res.add(
            f"K={k} paced event→completion p50",
            p["p50_ms"],
            "ms",
            baseline=sdk_p50 * (k + 1),
            baseline_label="(K+1) x SDK-alone call p50",
        )
    for k in (5, 20):
        g = out["paced_runs"][k]
        rate = out["rate"] * (k + 1)
        res.add(
            f"step→next-step p50 (K={k}, paced = {rate:.0f} SDK calls/s, SDK timestamps)",
            g["step_gap_p50_ms"],
            "ms",
            baseline=sdk_p50,
            baseline_label="SDK-alone call p50",
            target="≤10 ms",
            ok=g["step_gap_p50_ms"] is not None and g["step_gap_p50_ms"] <= 10,
        )
        res.add(
            f"step→next-step p99 (K={k}, paced)",
            g["step_gap_p99_ms"],
            "ms",
            baseline=g["step_gap_p50_ms"],
            baseline_label="p50",
        )
