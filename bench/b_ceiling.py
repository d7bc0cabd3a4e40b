"""Postgres ceiling: the minimum durable step transition in a raw psycopg loop.

One transition = claim one due queue item with ``FOR UPDATE SKIP LOCKED`` (and delete it: the
ack), append one ``run_history`` row, enqueue the run's next item, commit — against Stepwell's
own migrated tables and indexes, with payloads shaped like a ``StepCompleted`` event.  Two
forms: ``tx`` (BEGIN; claim+ack; insert history; enqueue; COMMIT = 5 round trips, the shape an
engine naturally writes) and ``cte`` (the same work as one statement in autocommit = 1 round
trip, the physical floor); ``txnotify`` adds the ``SELECT pg_notify`` Stepwell's enqueue sends,
to show what NOTIFY's commit-serialising lock costs; ``mix`` drives Stepwell's own repository
functions (claim 1 via ``stepwell_claim``, ``load_history``, ``function_by_slug_or_id``, then
``append_history`` + ``enqueue_items`` (+NOTIFY) + ``ack_item`` in a transaction = 9 round
trips) from a bare asyncio loop: the database-side capacity of the current statement mix,
without HTTP, ``decide`` or the worker; ``mixlean`` is ``mix`` without the history load,
the function lookup and the NOTIFY (what caching and a merged wake-up would remove).
Each runs with 1 and 8 connections, one client *process* per connection so that client-side
Python is not the limit.  This is the baseline every engine
figure is divided by.  Same-run baseline for its own latency: a bare ``SELECT 1`` round trip.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.common import BenchResult, CpuMeter, Ctx, backend_pids, mean, pct, scratch_db

CLAIM_ACK = """
DELETE FROM queue_items
 WHERE id = (SELECT id FROM queue_items
              WHERE available_at <= now()
              ORDER BY score, id
              LIMIT 1
                FOR UPDATE SKIP LOCKED)
RETURNING run_id, payload
"""

APPEND = """
INSERT INTO run_history (run_id, version, type, schema_version, payload)
VALUES (%s, %s, 'StepCompleted', 1, %s)
"""

ENQUEUE = """
INSERT INTO queue_items (kind, job_id, run_id, function_id, available_at, score, max_attempts,
                         payload)
VALUES ('edge', %s, %s, 'bench-fn', now(), %s, 5, %s)
"""

ONE_STATEMENT = """
WITH claimed AS (
    DELETE FROM queue_items
     WHERE id = (SELECT id FROM queue_items
                  WHERE available_at <= now()
                  ORDER BY score, id
                  LIMIT 1
                    FOR UPDATE SKIP LOCKED)
    RETURNING run_id, (payload->>'v')::int AS v
), history AS (
    INSERT INTO run_history (run_id, version, type, schema_version, payload)
    SELECT run_id, v + 1, 'StepCompleted', 1,
           jsonb_build_object('at', %(ms)s::bigint, 'step_id', md5(run_id || v), 'name', 's',
                              'output', jsonb_build_object('data', v), 'attempt', 0,
                              'started_at', %(ms)s::bigint, 'op', 'StepRun', 'size', 10)
      FROM claimed
)
INSERT INTO queue_items (kind, job_id, run_id, function_id, available_at, score, max_attempts,
                         payload)
SELECT 'edge', run_id || ':next:' || (v + 1), run_id, 'bench-fn', now(), %(ms)s::bigint, 5,
       jsonb_build_object('step_id', 'step', 'v', v + 1)
  FROM claimed
"""

SEED_RUNS = 256
MIX_FN = "bench-mix-fn"


async def _mix_loop(  # noqa: PLR0917 - a multiprocessing target's argument list
    url: str, start_at: float, stop_at: float, out: Any, done: Any, lean: bool = False
) -> None:
    """Stepwell's own per-step statements, from its repository functions, nothing else:
    claim (1 item), load the run's history, look the function up, then one transaction that
    appends the step, enqueues the next item (+ NOTIFY) and acks the claimed one.

    ``lean`` drops what a cache and a merged wake-up would remove: no history load, no
    function lookup, no NOTIFY (6 round trips instead of 9)."""
    from app.registry.store import function_by_slug_or_id
    from app.store.db import connect
    from app.store.history import append_history, load_history
    from app.store.queue import ack_item, claim_due_items, enqueue_items
    from domain.history import StepCompleted
    from domain.queue import ItemKind, ItemSpec

    conn = await connect(url)
    lat: list[float] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))  # all workers start together
    while time.time() < stop_at:
        t0 = time.perf_counter()
        now = int(time.time() * 1000)
        items = await claim_due_items(conn, 1, 30_000, now)
        if not items:
            continue
        item = items[0]
        run_id = str(item.run_id)
        if lean:  # the version rides on the item, as a worker-side cache would know it
            v = int(item.payload.get("v", 0))
            fn = None
        else:
            history = await load_history(conn, run_id)
            fn = await function_by_slug_or_id(conn, MIX_FN)
            v = len(history)
        step = StepCompleted(
            at=now,
            step_id=f"{run_id}{v:036d}"[-40:],
            name=f"s{v}",
            output={"data": v},
            attempt=0,
            started_at=now,
            size=10,
        )
        nxt = ItemSpec(
            kind=ItemKind.EDGE,
            job_id=f"{run_id}:next:{v}",
            available_at=now,
            run_id=run_id,
            function_id=fn.id if fn else MIX_FN,
            payload={"step_id": "step", "v": v + 1},
            score=now,
        )
        async with conn.transaction():
            await append_history(conn, run_id, v, [step])
            # lean: a "now" just before the item's due time makes enqueue_items skip its NOTIFY
            await enqueue_items(conn, [nxt], now - 1 if lean else now)
            await ack_item(conn, item)
        lat.append(time.perf_counter() - t0)
    out.put(json.dumps({"n": len(lat), "lat": lat[:: max(1, len(lat) // 5000)]}))
    done.wait(30)  # keep the backend alive until the parent has read its CPU time
    await conn.close()


def seed_mix(url: str) -> None:
    """A registered function (for the lookup) and one due item per run."""
    import json as _json

    from bench.common import stub_function

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = stub_function(MIX_FN, "bench/mix", "http://127.0.0.1:9")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM queue_items")
        conn.execute("DELETE FROM run_history")
        conn.execute(
            "INSERT INTO apps (id, name, url, created_at, updated_at)"
            " VALUES ('bench-app', 'bench', 'http://127.0.0.1:9/api', %s, %s)"
            " ON CONFLICT DO NOTHING",
            (now, now),
        )
        conn.execute(
            "INSERT INTO functions"
            " (id, app_id, slug, name, version, config, created_at, updated_at)"
            " VALUES (%s, 'bench-app', %s, %s, 1, %s, %s, %s) ON CONFLICT DO NOTHING",
            (MIX_FN, MIX_FN, MIX_FN, _json.dumps(config), now, now),
        )
        conn.execute(
            "INSERT INTO function_versions (function_id, version, config, created_at)"
            " VALUES (%s, 1, %s, %s) ON CONFLICT DO NOTHING",
            (MIX_FN, _json.dumps(config), now),
        )
        now_ms = int(time.time() * 1000)
        with conn.cursor() as cur:
            cur.executemany(
                ENQUEUE,
                [
                    (f"mix-{i:04d}:seed", f"mix-{i:04d}", now_ms, Jsonb({"step_id": "step"}))
                    for i in range(SEED_RUNS)
                ],
            )
        conn.execute("VACUUM ANALYZE queue_items")


def seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM queue_items")
        conn.execute("DELETE FROM run_history")
        now_ms = int(time.time() * 1000)
        with conn.cursor() as cur:
            cur.executemany(
                ENQUEUE,
                [
                    (
                        f"run-{i:04d}:next:0",
                        f"run-{i:04d}",
                        now_ms,
                        Jsonb({"step_id": "step", "v": 0}),
                    )
                    for i in range(SEED_RUNS)
                ],
            )
        conn.execute("VACUUM ANALYZE queue_items")


def _worker(  # noqa: PLR0917 - a multiprocessing target's argument list
    url: str, form: str, start_at: float, stop_at: float, out: Any, done: Any
) -> None:
    conn = psycopg.connect(url, autocommit=(form == "cte"))
    lat: list[float] = []
    n = 0
    if form in ("mix", "mixlean"):
        conn.close()
        asyncio.run(_mix_loop(url, start_at, stop_at, out, done, lean=form == "mixlean"))
        return
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < stop_at:
        t0 = time.perf_counter()
        ms = int(time.time() * 1000)
        if form == "cte":
            conn.execute(ONE_STATEMENT, {"ms": ms})
        elif form in ("tx", "txnotify"):
            with conn.transaction():
                row = conn.execute(CLAIM_ACK).fetchone()
                if row is None:
                    continue
                run_id, payload = row
                v = int(payload["v"]) + 1
                step = {
                    "at": ms,
                    "step_id": f"{run_id}{v:036d}"[-40:],
                    "name": f"s{v}",
                    "output": {"data": v},
                    "attempt": 0,
                    "started_at": ms,
                    "op": "StepRun",
                    "size": 10,
                }
                conn.execute(APPEND, (run_id, v, Jsonb(step)))
                conn.execute(
                    ENQUEUE, (f"{run_id}:next:{v}", run_id, ms, Jsonb({"step_id": "step", "v": v}))
                )
                if form == "txnotify":  # what Stepwell's enqueue adds: a wake-up NOTIFY
                    conn.execute("SELECT pg_notify('stepwell_bench', '')")
        else:  # "rt": one bare round trip
            conn.execute("SELECT 1").fetchone()
        lat.append(time.perf_counter() - t0)
        n += 1
    out.put(json.dumps({"n": n, "lat": lat[:: max(1, len(lat) // 5000)]}))
    done.wait(30)  # keep the backend alive until the parent has read its CPU time
    conn.close()


def measure(url: str, form: str, conns: int, seconds: float) -> dict[str, Any]:
    mpc = mp.get_context("fork")
    q = mpc.Queue()
    done = mpc.Event()
    start_at = time.time() + 0.5
    stop_at = start_at + seconds
    procs = [
        mpc.Process(target=_worker, args=(url, form, start_at, stop_at, q, done))
        for _ in range(conns)
    ]
    for p in procs:
        p.start()
    time.sleep(0.3)
    # Postgres backends are sampled while the workers still hold their connections.
    pg = CpuMeter(lambda: backend_pids(url))
    clients = CpuMeter(lambda: [p.pid for p in procs if p.pid])
    pg.start()
    clients.start()
    results = [json.loads(q.get(timeout=seconds + 30)) for _ in procs]
    pg_cpu = pg.stop()
    clients.stop()
    done.set()
    for p in procs:
        p.join(10)
    n = sum(r["n"] for r in results)
    lat = [x for r in results for x in r["lat"]]
    return {
        "form": form,
        "conns": conns,
        "seconds": seconds,
        "n": n,
        "per_s": n / seconds,
        "mean_ms": (mean(lat) or 0) * 1000,
        "p50_ms": (pct(lat, 50) or 0) * 1000,
        "p99_ms": (pct(lat, 99) or 0) * 1000,
        "pg_cpu_ms_per_op": pg_cpu / max(n, 1) * 1000,
        "client_cpu_ms_per_op": sum(clients.last.values()) / max(n, 1) * 1000,
    }


def ceiling(
    ctx: Ctx,
    url: str,
    seconds: float,
    forms: tuple[str, ...] = ("tx", "cte", "txnotify", "mix", "mixlean"),
) -> dict[str, Any]:
    out: dict[str, Any] = {"rt1": measure(url, "rt", 1, min(seconds, 2.0))}
    for form in forms:
        for conns in (1, 8):
            (seed_mix if form.startswith("mix") else seed)(url)
            key = f"{form}{conns}"
            out[key] = measure(url, form, conns, seconds)
            ctx.log(f"ceiling {key}: {out[key]['per_s']:.0f}/s, mean {out[key]['mean_ms']:.2f} ms")
    return out


def ensure_ceiling(ctx: Ctx) -> dict[str, Any]:
    """The ceiling of this run; measured briefly here if the ceiling benchmark was not selected."""
    if "ceiling" not in ctx.shared:
        with scratch_db(ctx, "ceiling") as url:
            ctx.shared["ceiling"] = ceiling(ctx, url, 1.5 if ctx.quick else 3.0, forms=("tx",))
    return dict(ctx.shared["ceiling"])


def run(ctx: Ctx, res: BenchResult) -> None:
    seconds = 1.5 if ctx.quick else 5.0
    with scratch_db(ctx, "ceiling") as url:
        c = ceiling(ctx, url, seconds)
    ctx.shared["ceiling"] = c
    res.details.update(c)
    rt = c["rt1"]["mean_ms"]
    for form, label in (
        ("tx", "BEGIN+claim/ack+append+enqueue+COMMIT"),
        ("cte", "one statement"),
        ("txnotify", "tx + SELECT pg_notify, as Stepwell's enqueue does"),
        ("mix", "Stepwell's own per-step statements via its repository functions"),
        ("mixlean", "mix without history load, function lookup and NOTIFY"),
    ):
        one, eight = c[f"{form}1"], c[f"{form}8"]
        res.add(f"{form} transitions/s @1 conn ({label})", one["per_s"], "steps/s")
        res.add(
            f"{form} mean latency @1 conn",
            one["mean_ms"],
            "ms",
            baseline=rt,
            baseline_label="SELECT 1 round trip, ms",
        )
        res.add(
            f"{form} transitions/s @8 conns",
            eight["per_s"],
            "steps/s",
            baseline=one["per_s"],
            baseline_label="@1 conn",
        )
        res.add(
            f"{form} mean latency @8 conns",
            eight["mean_ms"],
            "ms",
            baseline=one["mean_ms"],
            baseline_label="@1 conn",
        )
        res.add(
            f"{form} Postgres CPU per transition @8",
            eight["pg_cpu_ms_per_op"],
            "ms",
            baseline=one["pg_cpu_ms_per_op"],
            baseline_label="@1 conn",
        )
    res.add(
        "mix client CPU per transition @8 (psycopg async + repository code)",
        c["mix8"]["client_cpu_ms_per_op"],
        "ms",
        baseline=c["tx8"]["client_cpu_ms_per_op"],
        baseline_label="tx client CPU (sync psycopg, 3 statements)",
    )
    res.add(
        "mixlean client CPU per transition @8",
        c["mixlean8"]["client_cpu_ms_per_op"],
        "ms",
        baseline=c["mix8"]["client_cpu_ms_per_op"],
        baseline_label="mix (9 round trips)",
    )
    tx8, n8 = c["tx8"]["per_s"], c["txnotify8"]["per_s"]
    res.add(
        "NOTIFY in the transition: transitions/s @8 conns",
        n8,
        "steps/s",
        baseline=tx8,
        baseline_label="tx @8 without NOTIFY",
        note="NOTIFY takes a cluster-wide lock held through commit",
    )
