"""Side by side with DBOS: a K-step DBOS workflow vs a K-step Stepwell function, same Postgres.

DBOS (``pip install dbos``) runs in its own process (``bench/dbos_app.py``) against a scratch
system database on the same PostgreSQL server; Stepwell runs against another scratch database
with the fast SDK stand-in, so both sides do trivial steps and the figures compare the
durable-execution machinery.  For K ∈ {1, 5, 20}: N runs submitted at once with at most 32
executing (Stepwell: its 32 worker slots; DBOS: a semaphore) — steps/s and submission→completion
p50 — then runs one at a time (unloaded latency, per-step overhead).  The ratio reported is
Stepwell / DBOS (>1 = Stepwell faster for throughput, slower for latency).  When the e2e
benchmark ran in the same run, Stepwell with the official SDK is compared too.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import httpx
import psycopg

from bench.common import (
    PY,
    BenchResult,
    Ctx,
    clean_env,
    pct,
    register,
    scratch_db,
    stepwell_server,
    stub_function,
    stub_sdk,
    wait_queue_empty,
)

KS = (1, 5, 20)
RUNS = """
SELECT (e.data->>'seq')::int, r.ended_at, r.status
  FROM runs r JOIN events e ON e.internal_id = r.event_ids[1]
 WHERE e.data->>'tag' = %s AND r.status = 'Completed'
"""


def dbos_side(ctx: Ctx, n: int, sequential: int) -> dict[str, Any]:
    with scratch_db(ctx, "dbos", migrated=False) as url:
        args = [
            PY,
            "-m",
            "bench.dbos_app",
            "--db",
            url,
            "--ks",
            ",".join(map(str, KS)),
            "--n",
            str(n),
            "--sequential",
            str(sequential),
            "--max-seconds",
            "120",
        ]
        log = ctx.log_dir / "dbos.log"
        with log.open("ab") as err:
            proc = subprocess.run(
                args, stdout=subprocess.PIPE, stderr=err, env=clean_env(), timeout=900, check=False
            )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"dbos_app exited {proc.returncode}:\n" + "\n".join(tail))
        out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        return {
            "burst": {int(k): v for k, v in out["burst"].items()},
            "sequential": {int(k): v for k, v in out["sequential"].items()},
        }


def _wait(conn: psycopg.Connection[Any], tag: str, n: int, timeout: float) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        rows = conn.execute(RUNS, (tag,)).fetchall()
        if len(rows) >= n:
            break
        time.sleep(0.01 if n == 1 else 0.1)
    return rows


def stepwell_side(ctx: Ctx, n: int, sequential: int) -> dict[str, Any]:
    out: dict[str, Any] = {"burst": {}, "sequential": {}}
    with (
        scratch_db(ctx, "dbos_sw") as url,
        stub_sdk(ctx, "dbos") as stub,
        stepwell_server(ctx, url, "dbos") as srv,
        psycopg.connect(url, autocommit=True) as conn,
        httpx.Client(timeout=60) as http,
    ):
        register(srv.url, stub.url, [stub_function("bench-fn", "bench/go", stub.url)])
        for k in KS:
            tag = f"b{k}"
            sent: dict[int, int] = {}
            for start in range(0, n, 100):
                seqs = range(start, min(n, start + 100))
                now = time.time_ns()
                sent.update((s, now) for s in seqs)
                http.post(
                    f"{srv.url}/e/bench",
                    json=[
                        {"name": "bench/go", "data": {"k": k, "seq": s, "tag": tag}} for s in seqs
                    ],
                ).raise_for_status()
            rows = _wait(conn, tag, n, max(60.0, n * k / 40))
            lat = [(r[1].timestamp() * 1e9 - sent[r[0]]) / 1e6 for r in rows]
            elapsed = max(r[1].timestamp() for r in rows) - min(sent.values()) / 1e9
            out["burst"][k] = {
                "completed": len(rows),
                "steps_per_s": len(rows) * k / elapsed,
                "p50_ms": pct(lat, 50),
                "p99_ms": pct(lat, 99),
            }
            wait_queue_empty(url, 120)  # the burst's lifecycle events, before unloaded runs
            seq_lat = []
            for s in range(sequential):
                tag_s = f"s{k}-{s}"
                t0 = time.time_ns()
                http.post(
                    f"{srv.url}/e/bench",
                    json={"name": "bench/go", "data": {"k": k, "seq": 0, "tag": tag_s}},
                ).raise_for_status()
                rows = _wait(conn, tag_s, 1, 30)
                if rows:
                    seq_lat.append((rows[0][1].timestamp() * 1e9 - t0) / 1e6)
            out["sequential"][k] = {
                "p50_ms": pct(seq_lat, 50),
                "p99_ms": pct(seq_lat, 99),
                "n": len(seq_lat),
            }
            ctx.log(f"dbos/stepwell K={k}: {out['burst'][k]} seq {out['sequential'][k]}")
    return out


def run(ctx: Ctx, res: BenchResult) -> None:
    n = 50 if ctx.quick else 500
    sequential = 3 if ctx.quick else 10
    try:
        dbos = dbos_side(ctx, n, sequential)
    except Exception as exc:
        res.details["dbos_error"] = str(exc)
        raise
    sw = stepwell_side(ctx, n, sequential)
    res.details.update(dbos=dbos, stepwell_stub=sw, n=n, sequential=sequential)
    for k in KS:
        d, s = dbos["burst"][k], sw["burst"][k]
        res.add(
            f"K={k} throughput, {n} runs submitted at once, ≤32 executing: Stepwell+stub",
            s["steps_per_s"],
            "steps/s",
            baseline=d["steps_per_s"],
            baseline_label="DBOS, same K",
        )
        res.add(
            f"K={k} submission→completion p50 in that burst: Stepwell+stub",
            s["p50_ms"],
            "ms",
            baseline=d["p50_ms"],
            baseline_label="DBOS",
        )
        ds, ss = dbos["sequential"][k], sw["sequential"][k]
        res.add(
            f"K={k} unloaded run latency p50: Stepwell+stub",
            ss["p50_ms"],
            "ms",
            baseline=ds["p50_ms"],
            baseline_label="DBOS",
        )
    for k in (5, 20):
        over_s = (sw["sequential"][k]["p50_ms"] - sw["sequential"][1]["p50_ms"]) / (k - 1)
        over_d = (dbos["sequential"][k]["p50_ms"] - dbos["sequential"][1]["p50_ms"]) / (k - 1)
        res.add(
            f"unloaded per-step overhead (K={k} vs 1): Stepwell+stub",
            over_s,
            "ms",
            baseline=over_d,
            baseline_label="DBOS",
        )
    res.add(
        "DBOS CPU per step (K=20 burst, whole DBOS process)",
        dbos["burst"][20]["cpu_ms_per_step"],
        "ms",
        baseline=ctx.shared.get("engine_cpu_ms_per_step"),
        baseline_label="Stepwell server CPU/step (engine bench)",
    )
    e2e = ctx.shared.get("e2e")
    if e2e:
        for k in KS:
            b = e2e["burst"][k]
            res.add(
                f"K={k} throughput: Stepwell + official SDK (e2e, {e2e['n']} events)",
                b["steps_per_s"],
                "steps/s",
                baseline=dbos["burst"][k]["steps_per_s"],
                baseline_label="DBOS",
            )
