"""Engine capacity: N runs x K sequential steps against the fast SDK stand-in (bench/stub_sdk.py).

Phase 1 (throughput, direct to Postgres): N events are posted in arrays of 100, each starting a
run of ``bench-fn`` that takes K ``StepRun`` steps; we time until every run is Completed and
the queue is empty, and read CPU (psutil: server, stub, Postgres backends) over that window.
Transactions and tuples per step come from ``pg_stat_database`` / ``pg_stat_user_tables``
deltas over the server's whole life (its backends flush their counters when they exit).

Phase 2 (accounting, through ``bench/pgproxy.py``): a fresh server talks to Postgres through
the counting proxy; M runs with K=1 then M runs with K steps give the *marginal* round trips,
statements and commits per step, ``(B - A) / (M·(K - 1))``, and the fixed cost per run; a few
runs executed one at a time give the unloaded cost.  pg_stat_statements is not used: it needs
``shared_preload_libraries`` (empty on this server).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg

from bench import pgproxy
from bench.b_ceiling import ensure_ceiling
from bench.common import (
    PY,
    BenchResult,
    CpuMeter,
    Ctx,
    Proc,
    backend_pids,
    db_stats,
    dbname_of,
    final_runs,
    free_port,
    register,
    scratch_db,
    spawn,
    stats_delta,
    stepwell_server,
    stepwell_worker,
    stub_function,
    stub_sdk,
)

FN = "bench-fn"
EVENT = "bench/go"


def send_runs(server: str, n: int, k: int, tag: str, batch: int = 100) -> float:
    """Post ``n`` events (arrays of ``batch``); returns the time the first one was sent."""
    t0 = time.time()
    with httpx.Client(timeout=60) as http:
        for start in range(0, n, batch):
            events = [
                {"name": EVENT, "data": {"k": k, "seq": i, "tag": tag}}
                for i in range(start, min(n, start + batch))
            ]
            r = http.post(f"{server}/e/bench", json=events)
            r.raise_for_status()
    return t0


class Poller:
    """Completion checks on our own connection; counts its transactions so they can be removed."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.queries = 0

    def close(self) -> None:
        self.conn.close()

    def done(self, expected: int) -> tuple[int, int]:
        self.queries += 1
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM runs WHERE status = 'Completed'),"
            " (SELECT count(*) FROM queue_items)"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def wait(self, expected: int, timeout: float, interval: float = 0.02) -> tuple[bool, float]:
        """Wait until ``expected`` runs completed and the queue drained; (ok, time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            completed, queued = self.done(expected)
            if completed >= expected and queued == 0:
                return True, time.time()
            time.sleep(interval)
        return False, time.time()

    def steps(self) -> int:
        self.queries += 1
        row = self.conn.execute(
            "SELECT count(*) FROM run_history WHERE type = 'StepCompleted'"
        ).fetchone()
        return int(row[0]) if row else 0


@contextlib.contextmanager
def pg_proxy(ctx: Ctx, name: str) -> Iterator[tuple[int, int, Proc]]:
    port, stats_port = free_port(), free_port()
    args = [PY, "-m", "bench.pgproxy", "--port", str(port), "--stats-port", str(stats_port)]
    # The proxy has no HTTP: spawn() waits until its stats port accepts a connection.
    with spawn(args, port=stats_port, log=ctx.log_dir / f"{name}-pgproxy.log", health="tcp") as p:
        yield port, stats_port, p


def proxied_url(port: int, url: str) -> str:
    return (
        f"postgresql://postgres@127.0.0.1:{port}/{dbname_of(url)}"
        "?sslmode=disable&gssencmode=disable"
    )


def throughput_phase(ctx: Ctx, n: int, k: int, warm: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "k": k, "warm": warm}
    with scratch_db(ctx, "engine") as url:
        s0 = db_stats(url)
        poller = Poller(url)
        try:
            with stub_sdk(ctx, "engine") as stub, stepwell_server(ctx, url, "engine") as srv:
                register(srv.url, stub.url, [stub_function(FN, EVENT, stub.url)])
                send_runs(srv.url, warm, k, "warm")
                ok, _ = poller.wait(warm, 60)
                if not ok:
                    raise RuntimeError(f"warm-up runs did not complete:\n{srv.tail()}")
                steps_before = poller.steps()
                pg = CpuMeter(lambda: backend_pids(url))
                pg.start()
                cpu_srv0, cpu_stub0 = srv.cpu(), stub.cpu()
                t0 = send_runs(srv.url, n, k, "main")
                t_sent = time.time()
                ok, t1 = poller.wait(warm + n, max(60.0, n * k / 50))
                cpu_srv, cpu_stub = srv.cpu() - cpu_srv0, stub.cpu() - cpu_stub0
                pg_cpu = pg.stop()
                steps = poller.steps() - steps_before
                out.update(
                    completed=ok,
                    seconds=t1 - t0,
                    send_seconds=t_sent - t0,
                    steps=steps,
                    steps_per_s=steps / (t1 - t0),
                    runs_per_s=n / (t1 - t0) if ok else None,
                    server_cpu_s=cpu_srv,
                    stub_cpu_s=cpu_stub,
                    pg_cpu_s=pg_cpu,
                    server_rss_mb=srv.rss() / 2**20,
                    statuses=final_runs(poller.conn),
                    sdk_calls=httpx.get(f"{stub.url}/stats", timeout=10).json()["calls"],
                )
        finally:
            poller.close()
        time.sleep(1.0)  # exited backends have flushed their counters
        d = stats_delta(s0, db_stats(url))
        total_steps = (warm + n) * k
        d["xact_commit_minus_poller"] = d["xact_commit"] - poller.queries
        out["pg_stat"] = d
        out["total_steps"] = total_steps
    return out


def scale_out_phase(ctx: Ctx, n: int, k: int, warm: int) -> dict[str, Any]:
    """The same burst with one extra ``stepwell worker`` process claiming from the same queue."""
    out: dict[str, Any] = {"n": n, "k": k}
    with scratch_db(ctx, "engine_x2") as url:
        poller = Poller(url)
        try:
            with (
                stub_sdk(ctx, "engine-x2") as stub,
                stepwell_server(ctx, url, "engine-x2") as srv,
                stepwell_worker(ctx, url, "engine-x2") as wrk,
            ):
                register(srv.url, stub.url, [stub_function(FN, EVENT, stub.url)])
                send_runs(srv.url, warm, k, "warm")
                if not poller.wait(warm, 60)[0]:
                    raise RuntimeError("scale-out warm-up did not complete")
                steps_before = poller.steps()
                cpu0 = srv.cpu() + wrk.cpu()
                t0 = send_runs(srv.url, n, k, "main")
                ok, t1 = poller.wait(warm + n, max(60.0, n * k / 50))
                steps = poller.steps() - steps_before
                out.update(
                    completed=ok,
                    seconds=t1 - t0,
                    steps=steps,
                    steps_per_s=steps / (t1 - t0),
                    cpu_ms_per_step=(srv.cpu() + wrk.cpu() - cpu0) / max(1, steps) * 1000,
                )
        finally:
            poller.close()
    return out


def proxied_phase(ctx: Ctx, m: int, k: int, sequential: int) -> dict[str, Any]:
    out: dict[str, Any] = {"m": m, "k": k, "sequential": sequential}
    with scratch_db(ctx, "engine_rt") as url, pg_proxy(ctx, "engine") as (port, sport, _):
        poller = Poller(url)
        try:
            with (
                stub_sdk(ctx, "engine-rt") as stub,
                stepwell_server(ctx, proxied_url(port, url), "engine-rt") as srv,
            ):
                register(srv.url, stub.url, [stub_function(FN, EVENT, stub.url)])
                done = 5
                send_runs(srv.url, 5, k, "warm")
                if not poller.wait(done, 60)[0]:
                    raise RuntimeError("proxied warm-up did not complete")
                time.sleep(0.3)
                pgproxy.read_stats(sport, reset=True)
                send_runs(srv.url, m, 1, "A")
                done += m
                poller.wait(done, 120)
                out["A"] = pgproxy.read_stats(sport, reset=True)
                send_runs(srv.url, m, k, "B")
                done += m
                poller.wait(done, 300)
                out["B"] = pgproxy.read_stats(sport, reset=True)
                for _ in range(sequential):
                    send_runs(srv.url, 1, k, "C")
                    done += 1
                    poller.wait(done, 60, interval=0.005)
                out["C"] = pgproxy.read_stats(sport, reset=True)
                out["statuses"] = final_runs(poller.conn)
        finally:
            poller.close()
    return out


def marginal(a: dict[str, Any], b: dict[str, Any], key: str, m: int, k: int) -> tuple[float, float]:
    """(per extra step, fixed per run) for counter ``key`` from the K=1 and K=k phases."""
    per_step = (b[key] - a[key]) / (m * (k - 1))
    return per_step, a[key] / m - per_step


def statement_mix(a: dict[str, Any], b: dict[str, Any], m: int, k: int) -> list[dict[str, Any]]:
    """Per statement text: round trips per extra step, per run, and mean time (from the proxy)."""
    sa, sb = a["by_statement"], b["by_statement"]
    rows = []
    for text in set(sa) | set(sb):
        ca = sa.get(text, {"calls": 0, "total_ms": 0.0})
        cb = sb.get(text, {"calls": 0, "total_ms": 0.0})
        per_step = (cb["calls"] - ca["calls"]) / (m * (k - 1))
        rows.append(
            {
                "statement": text,
                "per_step": round(per_step, 3),
                "per_run_fixed": round(ca["calls"] / m - per_step, 3),
                "mean_ms": round(cb["total_ms"] / max(1, cb["calls"]), 3),
            }
        )
    return sorted(rows, key=lambda r: (-r["per_step"], -r["per_run_fixed"]))


def run(ctx: Ctx, res: BenchResult) -> None:
    ceil = ensure_ceiling(ctx)
    k = 5 if ctx.quick else 10
    n = 200 if ctx.quick else 1000
    tp = throughput_phase(ctx, n, k, warm=10 if ctx.quick else 30)
    res.details["throughput"] = tp
    ctx.log(f"engine: {tp['steps_per_s']:.0f} steps/s, server CPU {tp['server_cpu_s']:.1f}s")
    ctx.shared["engine_cpu_ms_per_step"] = tp["server_cpu_s"] / max(1, tp["steps"]) * 1000
    ctx.shared["engine_steps_per_s"] = tp["steps_per_s"]
    x2 = scale_out_phase(ctx, n // 2, k, warm=10)
    res.details["scale_out"] = x2
    ctx.log(f"engine +1 worker process: {x2['steps_per_s']:.0f} steps/s")
    m = 30 if ctx.quick else 100
    rt = proxied_phase(ctx, m, k, sequential=3 if ctx.quick else 10)
    res.details["accounting"] = rt
    res.details["statements_marginal"] = statement_mix(rt["A"], rt["B"], m, k)
    tx8 = ceil["tx8"]
    steps = tp["steps"]
    note = "" if tp["completed"] else "TIMED OUT: partial"
    sps = tp["steps_per_s"]
    res.add(
        f"durable steps/s ({n} runs x {k} steps, burst)",
        sps,
        "steps/s",
        baseline=tx8["per_s"],
        baseline_label="ceiling tx @8 conns",
        target="≥1,500 & ratio ≥0.3",
        ok=sps >= 1500 and sps / tx8["per_s"] >= 0.3,
        note=note,
    )
    res.add(
        "durable steps/s with +1 `stepwell worker` process",
        x2["steps_per_s"],
        "steps/s",
        baseline=sps,
        baseline_label="server process alone",
        note=f"{x2['cpu_ms_per_step']:.2f} ms CPU/step over both processes",
    )
    if "cte8" in ceil:
        res.add(
            "durable steps/s vs one-statement floor",
            sps,
            "steps/s",
            baseline=ceil["cte8"]["per_s"],
            baseline_label="ceiling cte @8 conns",
        )
    res.add(
        "runs/s",
        tp["runs_per_s"],
        "runs/s",
        baseline=tx8["per_s"] / (k + 2),
        baseline_label="ceiling tx8 / (K+2) transitions per run",
    )
    a, b, c = rt["A"], rt["B"], rt["C"]
    for key, label, base, target in (
        ("round_trips", "DB round trips", 5.0, "≤3"),
        ("commits", "commits", 1.0, ""),
        ("statements", "statements (excl. BEGIN/COMMIT)", 3.0, ""),
    ):
        per_step, fixed = marginal(a, b, key, m, k)
        res.add(
            f"{label} per step (marginal, burst)",
            per_step,
            "",
            baseline=base,
            baseline_label="ceiling tx transition",
            target=target,
            ok=(per_step <= 3) if target else None,
        )
        res.add(
            f"{label} fixed per run (event, start, finish)",
            fixed,
            "",
            baseline=per_step,
            baseline_label="per step",
        )
        res.add(
            f"{label} per step, unloaded (1 run at a time, K={k})",
            c[key] / (rt["sequential"] * k),
            "",
            baseline=b[key] / (m * k),
            baseline_label="burst, incl. per-run cost",
        )
    ps = tp["pg_stat"]
    res.add(
        "Postgres transactions per step (pg_stat_database, incl. read-only)",
        ps["xact_commit_minus_poller"] / tp["total_steps"],
        "",
        baseline=1.0,
        baseline_label="ceiling: 1 per transition",
    )
    t = ps["tables"]
    hist = t.get("run_history", {}).get("ins", 0)
    res.add(
        "run_history rows per step",
        hist / tp["total_steps"],
        "",
        baseline=1.0,
        baseline_label="ceiling",
    )
    qi = t.get("queue_items", {})
    res.add(
        "queue_items writes (ins+upd+del) per step",
        (qi.get("ins", 0) + qi.get("upd", 0) + qi.get("del", 0)) / tp["total_steps"],
        "",
        baseline=2.0,
        baseline_label="ceiling: 1 ins + 1 del",
    )
    res.add(
        "server CPU per step",
        tp["server_cpu_s"] / steps * 1000,
        "ms",
        baseline=tx8["client_cpu_ms_per_op"],
        baseline_label="ceiling client CPU/transition",
    )
    res.add(
        "server CPU utilisation",
        tp["server_cpu_s"] / tp["seconds"],
        "cores",
        baseline=1.0,
        baseline_label="one core (one Python process)",
    )
    res.add(
        "Postgres CPU per step",
        tp["pg_cpu_s"] / steps * 1000,
        "ms",
        baseline=tx8["pg_cpu_ms_per_op"],
        baseline_label="ceiling tx8 PG CPU/transition",
    )
    res.add(
        "SDK stand-in CPU per SDK call",
        tp["stub_cpu_s"] / tp["sdk_calls"] * 1000,
        "ms",
        baseline=tp["server_cpu_s"] / tp["sdk_calls"] * 1000,
        baseline_label="server CPU per SDK call",
    )
