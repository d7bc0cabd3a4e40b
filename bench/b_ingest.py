"""Ingest: events/s accepted durably through ``POST /e/{key}``.

8 concurrent clients (one ``httpx.AsyncClient``, 8 connections) post for a fixed time either
single events or arrays of 100; an event counts once its request got 200 (Stepwell answers
only after the commit).  The server runs as ``stepwell dev`` does, with its workers on (no
function matches, so each event's processing item is only looked up and acked, concurrently).
Same-run baseline: Stepwell's own ``insert_events`` (same SQL, same transaction shape) called
from raw psycopg on 8 async connections with the same batch sizes — the ratio is what the HTTP
layer, validation and the in-process workers cost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from app.store.db import connect
from app.store.events import insert_events, received
from bench.common import BenchResult, Ctx, pct, query_one, scratch_db, stepwell_server
from domain.ids import new_ulid

CLIENTS = 8


def events(batch: int, base: int) -> list[dict[str, Any]]:
    return [
        {"name": "bench/ingest", "data": {"i": base + i, "pad": "x" * 100}} for i in range(batch)
    ]


async def http_load(url: str, batch: int, seconds: float, max_events: int) -> dict[str, Any]:
    accepted = 0
    lat: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CLIENTS), timeout=30) as http:

        async def client(c: int) -> None:
            nonlocal accepted, errors
            while time.monotonic() < stop and accepted < max_events:
                body = events(batch, accepted)
                t0 = time.perf_counter()
                r = await http.post(f"{url}/e/bench", json=body if batch > 1 else body[0])
                lat.append(time.perf_counter() - t0)
                if r.status_code == 200:
                    accepted += len(r.json()["ids"])
                else:
                    errors += 1

        t0 = time.monotonic()
        await asyncio.gather(*(client(c) for c in range(CLIENTS)))
        elapsed = time.monotonic() - t0
    return {
        "events": accepted,
        "seconds": elapsed,
        "per_s": accepted / elapsed,
        "errors": errors,
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
    }


async def raw_load(db_url: str, batch: int, seconds: float, max_events: int) -> dict[str, Any]:
    conns = [await connect(db_url) for _ in range(CLIENTS)]
    accepted = 0
    lat: list[float] = []
    stop = time.monotonic() + seconds

    async def client(conn: Any) -> None:
        nonlocal accepted
        while time.monotonic() < stop and accepted < max_events:
            now = int(time.time() * 1000)
            pairs = [(new_ulid(), e) for e in events(batch, accepted)]
            t0 = time.perf_counter()
            async with conn.transaction():
                await insert_events(conn, pairs, received(now), now)
            lat.append(time.perf_counter() - t0)
            accepted += batch

    try:
        t0, cpu0 = time.monotonic(), time.process_time()
        await asyncio.gather(*(client(c) for c in conns))
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    finally:
        for c in conns:
            await c.close()
    return {
        "events": accepted,
        "seconds": elapsed,
        "per_s": accepted / elapsed,
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "client_cpu_us_per_event": cpu / max(1, accepted) * 1e6,
    }


def run(ctx: Ctx, res: BenchResult) -> None:
    seconds = 2.0 if ctx.quick else 10.0
    cap = 500_000
    out: dict[str, Any] = {}
    with scratch_db(ctx, "ingest_raw") as raw_url:
        for batch in (1, 100):
            out[f"raw{batch}"] = asyncio.run(raw_load(raw_url, batch, seconds, cap))
            ctx.log(f"ingest raw batch={batch}: {out[f'raw{batch}']['per_s']:.0f} events/s")
    with scratch_db(ctx, "ingest") as url, stepwell_server(ctx, url, "ingest") as srv:
        asyncio.run(http_load(srv.url, 10, 0.5, 1000))  # warm-up
        for batch in (1, 100):
            cpu0 = srv.cpu()
            out[f"http{batch}"] = r = asyncio.run(http_load(srv.url, batch, seconds, cap))
            r["server_cpu_us_per_event"] = (srv.cpu() - cpu0) / max(1, r["events"]) * 1e6
            r["backlog_after"] = query_one(url, "SELECT count(*) FROM queue_items")
            ctx.log(f"ingest http batch={batch}: {r['per_s']:.0f} events/s")
    res.details.update(out)
    for batch, label in ((1, "single events"), (100, "arrays of 100")):
        h, raw = out[f"http{batch}"], out[f"raw{batch}"]
        target = "≥5,000/s" if batch == 100 else ""
        res.add(
            f"POST /e accepted, {label}, {CLIENTS} clients",
            h["per_s"],
            "events/s",
            baseline=raw["per_s"],
            baseline_label="raw psycopg insert_events, same batches",
            target=target,
            ok=(h["per_s"] >= 5000) if target else None,
            note=f"{h['errors']} errors; queue backlog after: {h['backlog_after']}",
        )
        res.add(
            f"POST /e request latency p50, {label}",
            h["p50_ms"],
            "ms",
            baseline=raw["p50_ms"],
            baseline_label="raw insert transaction p50",
        )
        res.add(
            f"server CPU per event, {label}",
            h["server_cpu_us_per_event"],
            "µs",
            baseline=raw["client_cpu_us_per_event"],
            baseline_label="raw psycopg client CPU/event",
            note="includes the in-process worker acking each event's item",
        )
