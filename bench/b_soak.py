"""Soak: a steady load for N minutes (``--soak-minutes``) against the fast SDK stand-in.

Runs of K=5 steps are started at a constant rate (40 % of this run's measured engine capacity
when the engine benchmark ran, else 10 runs/s), in small arrays every 0.5 s.  Every 10 s (5 s
with --quick) we sample the server's RSS, ``pg_total_relation_size('queue_items')``, its
``n_dead_tup``/``n_live_tup``, the queue depth and the runs completed.  Reported: start / end /
max of each, with end/start as the ratio, and "flat" = the max of the second half of the
samples is within 25 % of the max of the first half (no upward trend; autovacuum sawtooth is
fine).  The load stops at the deadline, then the queue gets up to 60 s to drain.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psycopg

from bench.common import (
    BenchResult,
    Ctx,
    query_one,
    register,
    scratch_db,
    stepwell_server,
    stub_function,
    stub_sdk,
)

K = 5
SAMPLE = """
SELECT pg_total_relation_size('queue_items'),
       (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'queue_items'),
       (SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'queue_items'),
       (SELECT count(*) FROM queue_items),
       (SELECT count(*) FROM runs WHERE status = 'Completed'),
       pg_total_relation_size('run_history'),
       (SELECT count(*) FROM pauses),
       (SELECT autovacuum_count + vacuum_count FROM pg_stat_user_tables
         WHERE relname = 'queue_items')
"""
COLS = (
    "queue_bytes",
    "queue_dead_tup",
    "queue_live_tup",
    "queue_depth",
    "completed",
    "history_bytes",
    "pauses",
    "queue_vacuums",
)


def query_autovacuum(ctx: Ctx) -> str:
    return str(query_one(ctx.pg_admin_url, "SHOW autovacuum"))


def flat(values: list[float]) -> bool:
    if len(values) < 4:
        return True
    half = len(values) // 2
    return max(values[half:]) <= 1.25 * max(*values[:half], 1)


def run(ctx: Ctx, res: BenchResult) -> None:  # noqa: PLR0915 - one timeline, read top to bottom
    seconds = ctx.soak_minutes * 60
    interval = 5.0 if ctx.quick else 10.0
    cap = ctx.shared.get("engine_steps_per_s")
    rate = max(2.0, min(100.0, 0.4 * cap / K)) if cap else 10.0
    samples: list[dict[str, Any]] = []
    sent = 0
    stop = threading.Event()
    errors: list[str] = []
    with (
        scratch_db(ctx, "soak") as url,
        stub_sdk(ctx, "soak") as stub,
        stepwell_server(ctx, url, "soak") as srv,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        register(srv.url, stub.url, [stub_function("bench-fn", "bench/go", stub.url)])

        def load() -> None:
            nonlocal sent
            t0 = time.monotonic()
            with httpx.Client(timeout=30) as http:
                while not stop.is_set():
                    due = int((time.monotonic() - t0) * rate) - sent
                    if due > 0:
                        try:
                            http.post(
                                f"{srv.url}/e/bench",
                                json=[
                                    {"name": "bench/go", "data": {"k": K, "seq": sent + i}}
                                    for i in range(due)
                                ],
                            ).raise_for_status()
                            sent += due
                        except httpx.HTTPError as exc:
                            errors.append(str(exc))
                            if len(errors) > 50:
                                return
                    stop.wait(0.5)

        def sample(t: float) -> None:
            row = conn.execute(SAMPLE).fetchone()
            assert row is not None
            s = dict(zip(COLS, (int(v or 0) for v in row), strict=True))
            s.update(t=round(t, 1), rss_mb=srv.rss() / 2**20, sent=sent, server_cpu_s=srv.cpu())
            samples.append(s)

        ctx.log(f"soak: {rate:.1f} runs/s x {K} steps for {seconds:.0f} s")
        thread = threading.Thread(target=load, daemon=True)
        start = time.monotonic()
        thread.start()
        next_at = start
        while True:
            now = time.monotonic()
            if now >= next_at:
                sample(now - start)
                next_at += interval
            if now - start >= seconds:
                break
            time.sleep(min(0.5, max(0.0, next_at - time.monotonic())))
        stop.set()
        thread.join(35)
        drain_deadline = time.monotonic() + 60
        while time.monotonic() < drain_deadline:
            # Drained: every sent event became a completed run and nothing is queued.
            row = conn.execute(
                "SELECT (SELECT count(*) FROM runs WHERE status = 'Completed'),"
                " (SELECT count(*) FROM queue_items)"
            ).fetchone()
            if row and row[0] >= sent and row[1] == 0:
                break
            time.sleep(0.5)
        sample(time.monotonic() - start)
        drained = samples[-1]["completed"] >= sent
    res.details.update(
        rate_runs_per_s=rate,
        k=K,
        seconds=seconds,
        samples=samples,
        sent=sent,
        drained=drained,
        load_errors=errors[:5],
    )
    _report(ctx, res, samples, rate, drained)


def _report(
    ctx: Ctx, res: BenchResult, samples: list[dict[str, Any]], rate: float, drained: bool
) -> None:
    body = samples[:-1] or samples
    for key, unit, scale, label in (
        ("rss_mb", "MiB", 1, "server RSS"),
        ("queue_bytes", "KiB", 1 / 1024, "queue_items total size"),
        ("queue_dead_tup", "rows", 1, "queue_items n_dead_tup"),
        ("queue_depth", "items", 1, "queue depth"),
    ):
        vals = [s[key] * scale for s in body]
        res.add(
            f"{label}: end (max {max(vals):,.1f})",
            vals[-1],
            unit,
            baseline=vals[0],
            baseline_label="start",
            target="flat",
            ok=flat(vals),
        )
    av = query_autovacuum(ctx)
    res.rows[-3].note = (
        f"autovacuum={av} on this server; queue_items vacuumed {body[-1]['queue_vacuums']}x "
        "during the soak"
    )
    span = body[-1]["t"] - body[0]["t"] or 1
    done = body[-1]["completed"] - body[0]["completed"]
    res.add(
        f"runs completed/s during soak ({ctx.soak_minutes:g} min)",
        done / span,
        "runs/s",
        baseline=rate,
        baseline_label="offered runs/s",
        note="" if drained else "NOT DRAINED",
    )
    cpu = body[-1]["server_cpu_s"] - body[0]["server_cpu_s"]
    res.add(
        "server CPU utilisation during soak",
        cpu / span,
        "cores",
        baseline=1.0,
        baseline_label="one core",
    )
