"""Pause matching: the cost of one incoming event with 1k / 10k / 100k runs waiting on its name.

``pauses`` rows are seeded directly (COPY) in the engine's format: kind ``wait``, one event
name, a distinct match key each — ``key_of("data.id", "k<i>")`` from
``app/engine/transitions.py``, the key ``pause_key`` extracts from ``async.data.id == "k<i>"``
(checked here against ``pause_key`` itself).

* **lookup** — ``app.store.pauses.find_candidates`` with ``event_keys(event)`` for an event
  that matches exactly one of N pauses (random key), timed on one connection (psycopg
  prepares it after 5 runs, as in the server); baseline: a ``SELECT 1`` round trip on the same
  connection, interleaved.  The plan (EXPLAIN ANALYZE) is kept in the details.
* **end to end** — a real run parked by the stub SDK's ``WaitForEvent``
  (``async.data.id == 'real-<j>'``) among N seeded waiters; time from ``POST /e`` of the
  matching event to the stub receiving the resuming call.  Baseline: the same with 0 waiters.

Target: flat — ≤5 ms added at 100k.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from app.engine.events import event_keys
from app.engine.transitions import key_of, pause_key
from app.store.db import connect
from app.store.pauses import find_candidates
from bench.common import (
    BenchResult,
    Ctx,
    pct,
    register,
    scratch_db,
    stepwell_server,
    stub_function,
    stub_sdk,
)
from domain.effects import CreatePause
from domain.ids import new_ulid

EVENT = "bench/resume"
LEVELS = (1_000, 10_000, 100_000)


def check_key_format() -> None:
    now = int(time.time() * 1000)
    pause = CreatePause(
        pause_id="p",
        run_id="r",
        step_id="s",
        kind="wait",
        event_name=EVENT,
        expression='async.data.id == "k7"',
        expires_at=now,
        created_at=now,
    )
    if pause_key(pause) != key_of("data.id", "k7"):
        raise RuntimeError(f"pause key format changed: {pause_key(pause)!r}")


def seed(url: str, start: int, end: int) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY pauses (id, run_id, step_id, kind, event_name, match_key, expression,"
            " expires_at, created_at, source_event_id) FROM STDIN"
        ) as copy:
            for i in range(start, end):
                copy.write_row(
                    (
                        f"bench-pause-{i}",
                        f"bench-run-{i}",
                        hashlib.sha1(b"wait").hexdigest(),
                        "wait",
                        EVENT,
                        key_of("data.id", f"k{i}"),
                        f'async.data.id == "k{i}"',
                        now + timedelta(days=1),
                        now - timedelta(hours=1),
                        None,
                    )
                )
        conn.execute("ANALYZE pauses")


async def lookup(url: str, n: int, iterations: int) -> dict[str, Any]:
    conn = await connect(url)
    lat: list[float] = []
    rt: list[float] = []
    try:
        for _ in range(iterations):
            i = random.randrange(n)
            event = {
                "name": EVENT,
                "data": {"id": f"k{i}"},
                "id": new_ulid(),
                "ts": int(time.time() * 1000),
                "user": {},
            }
            t0 = time.perf_counter()
            rows = await find_candidates(conn, EVENT, event_keys(event), int(time.time() * 1000))
            lat.append(time.perf_counter() - t0)
            if len(rows) != 1:
                raise RuntimeError(f"expected 1 candidate for k{i}, got {len(rows)}")
            t0 = time.perf_counter()
            await (await conn.execute("SELECT 1")).fetchone()
            rt.append(time.perf_counter() - t0)
        keys = event_keys({"name": EVENT, "data": {"id": "k1"}, "id": "x", "ts": 1, "user": {}})
        cur = await conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM pauses WHERE event_name = %s"
            " AND (match_key IS NULL OR match_key = ANY(%s)) AND expires_at > now()",
            (EVENT, keys),
        )
        plan = "\n".join(r[0] for r in await cur.fetchall())
    finally:
        await conn.close()
    return {
        "n": n,
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "rt_p50_ms": pct(rt, 50) * 1000,
        "plan": plan,
    }


def end_to_end(server: str, stub: str, url: str, trials: int, tag: str) -> dict[str, Any]:
    lat: list[float] = []
    with httpx.Client(timeout=30) as http, psycopg.connect(url, autocommit=True) as conn:
        for t in range(trials):
            j = f"{tag}-{t}"
            http.post(
                f"{server}/e/bench",
                json={
                    "name": "bench/wait-start",
                    "data": {
                        "mode": "wait",
                        "wait_event": EVENT,
                        "wait_if": f"async.data.id == 'real-{j}'",
                    },
                },
            ).raise_for_status()
            key = key_of("data.id", f"real-{j}")
            run_id = None
            deadline = time.monotonic() + 30
            while run_id is None and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT run_id FROM pauses WHERE match_key = %s", (key,)
                ).fetchone()
                run_id = row[0] if row else None
                time.sleep(0.01)
            if run_id is None:
                raise RuntimeError(f"no pause was created for {j}")
            time.sleep(0.1)  # let the wait's catch-up check finish
            t0 = time.time_ns()
            http.post(
                f"{server}/e/bench", json={"name": EVENT, "data": {"id": f"real-{j}"}}
            ).raise_for_status()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                resumed = http.get(f"{stub}/stats").json()["resumed"]
                if run_id in resumed:
                    lat.append((resumed[run_id] - t0) / 1e6)
                    break
                time.sleep(0.003)
    return {
        "trials": trials,
        "resumed": len(lat),
        "p50_ms": pct(lat, 50),
        "max_ms": max(lat, default=None),
        "all_ms": lat,
    }


def run(ctx: Ctx, res: BenchResult) -> None:
    check_key_format()
    iterations = 50 if ctx.quick else 300
    trials = 3 if ctx.quick else 9
    micro: dict[int, Any] = {}
    e2e: dict[int, Any] = {}
    with (
        scratch_db(ctx, "pauses") as url,
        stub_sdk(ctx, "pauses") as stub,
        stepwell_server(ctx, url, "pauses") as srv,
    ):
        register(srv.url, stub.url, [stub_function("bench-wait", "bench/wait-start", stub.url)])
        end_to_end(srv.url, stub.url, url, 1, "warm")
        e2e[0] = end_to_end(srv.url, stub.url, url, trials, "n0")
        seeded = 0
        for n in LEVELS:
            seed(url, seeded, n)
            seeded = n
            micro[n] = asyncio.run(lookup(url, n, iterations))
            e2e[n] = end_to_end(srv.url, stub.url, url, trials, f"n{n}")
            lookup_ms, e2e_ms = micro[n]["p50_ms"], e2e[n]["p50_ms"]
            ctx.log(f"pauses N={n}: lookup p50 {lookup_ms:.2f} ms, e2e p50 {e2e_ms} ms")
    res.details.update(lookup=micro, end_to_end=e2e)
    low = micro[LEVELS[0]]
    for n in LEVELS:
        m = micro[n]
        res.add(
            f"find_candidates p50, {n:,} waiters",
            m["p50_ms"],
            "ms",
            baseline=m["rt_p50_ms"],
            baseline_label="SELECT 1 round trip p50",
        )
    added = micro[LEVELS[-1]]["p50_ms"] - low["p50_ms"]
    res.add(
        f"find_candidates added at {LEVELS[-1]:,} vs {LEVELS[0]:,}",
        added,
        "ms",
        baseline=low["p50_ms"],
        baseline_label=f"p50 at {LEVELS[0]:,}",
        target="≤5 ms",
        ok=added <= 5,
    )
    for n in LEVELS:
        res.add(
            f"POST /e → waiting run resumed p50, {n:,} waiters",
            e2e[n]["p50_ms"],
            "ms",
            baseline=e2e[0]["p50_ms"],
            baseline_label="0 waiters",
        )
    if e2e[LEVELS[-1]]["p50_ms"] is not None and e2e[0]["p50_ms"] is not None:
        added = e2e[LEVELS[-1]]["p50_ms"] - e2e[0]["p50_ms"]
        res.add(
            f"end-to-end added at {LEVELS[-1]:,} waiters",
            added,
            "ms",
            baseline=e2e[0]["p50_ms"],
            baseline_label="p50 with 0 waiters",
            target="≤5 ms",
            ok=added <= 5,
        )
