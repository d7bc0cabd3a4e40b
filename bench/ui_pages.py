"""Dev UI pages over a big database: 100k runs and 1M events must not slow the pages down.

A scratch database is migrated (``app.store.migrate.upgrade``) and seeded with SQL
``generate_series`` alone: one app with 20 functions (through the registry, so configs parse),
1,000,000 events over the last ~7 days (ULIDs made in SQL, time-ordered), 100,000 runs in the
``runs`` view — every 10th event started one; 70 % Completed, 15 % Failed, 10 % Running,
5 % Cancelled — and a week of hourly ``function_stats`` rows.  A Stepwell server with the UI
mounted is started as its own process (this file with ``--serve``), and each page is fetched
over HTTP (loopback, one keep-alive connection, sequential), ``--iterations`` times after a
warm-up: the runs list (first page, its live fragment, the next page by cursor, a page deep in
the week, filtered by status + function), the events stream (first page with the runs each
event started, by name, deep by cursor), an event page, the functions list and a function page.
Baselines measured in the same run: a ``SELECT 1`` round trip from this process, and
``GET /health`` from the server.  Prints a table; writes ``bench/results/ui_pages.json``.

Run: ``.venv/bin/python bench/ui_pages.py [--runs N] [--events N] [--iterations N] [--keep]``
(``STEPWELL_BENCH_PG`` overrides the admin URL ``postgresql://postgres@127.0.0.1:5432/postgres``).
Nothing asserts timings; the exit status is non-zero only if the benchmark crashed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

ADMIN = os.environ.get("STEPWELL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = ROOT / "bench" / "results" / "ui_pages.json"
LOGS = ROOT / "bench" / "results" / "logs"
FUNCTIONS = 20
SPAN_MS = 7 * 86_400_000  # events (and so runs) are spread evenly over the last 7 days

# ULIDs in SQL: 10 Crockford base-32 digits of the millisecond time, then 16 of a counter
# (tagged E for events, R for runs), so ids sort by time as real ones do.
B32 = """
CREATE FUNCTION pg_temp.b32(v bigint, n int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
                           ((v >> (5 * (n - 1 - i))) & 31)::int + 1, 1), '' ORDER BY i)
    FROM generate_series(0, n - 1) AS i
$$
"""
EVENT_ID = "pg_temp.b32({ts}, 10) || '00000E' || pg_temp.b32({n}, 10)"

SEED_EVENTS = f"""
INSERT INTO events (internal_id, id, name, data, "user", ts, v, received_at, source)
SELECT {EVENT_ID.format(ts="t.ts", n="g")}, {EVENT_ID.format(ts="t.ts", n="g")},
       'bench/bench-fn-' || lpad((g / 10 %% %(fns)s)::text, 2, '0'),
       jsonb_build_object('i', g, 'user', 'u' || (g %% 1000)), '{{}}'::jsonb, t.ts, NULL,
       to_timestamp(t.ts / 1000.0), 'api'
  FROM generate_series(1, %(events)s) AS g,
       LATERAL (SELECT %(now_ms)s::bigint - (%(events)s - g) * %(spacing)s AS ts) AS t
"""

# Run k was started by event 10k: same time, same function, its id in event_ids.
SEED_RUNS = f"""
INSERT INTO runs (run_id, function_id, function_slug, function_version, app_id, status,
                  queued_at, started_at, ended_at, event_ids, event_name, output)
SELECT pg_temp.b32(t.ts, 10) || '00000R' || pg_temp.b32(k, 10),
       (%(function_ids)s::text[])[(k %% %(fns)s) + 1],
       'bench-fn-' || lpad((k %% %(fns)s)::text, 2, '0'), 1, %(app_id)s, s.status,
       to_timestamp(t.ts / 1000.0), to_timestamp((t.ts + 15) / 1000.0),
       CASE WHEN s.status <> 'Running' THEN to_timestamp((t.ts + 15 + k %% 3000) / 1000.0) END,
       ARRAY[{EVENT_ID.format(ts="t.ts", n="e")}],
       'bench/bench-fn-' || lpad((k %% %(fns)s)::text, 2, '0'),
       CASE WHEN s.status = 'Completed' THEN jsonb_build_object('ok', k)
            WHEN s.status = 'Failed' THEN jsonb_build_object('name', 'Error', 'message', 'boom')
       END
  FROM generate_series(1, %(runs)s) AS k,
       LATERAL (SELECT k * 10 AS e) AS x,
       LATERAL (SELECT %(now_ms)s::bigint - (%(events)s - x.e) * %(spacing)s AS ts) AS t,
       LATERAL (SELECT CASE WHEN k %% 100 < 70 THEN 'Completed' WHEN k %% 100 < 85 THEN 'Failed'
                            WHEN k %% 100 < 95 THEN 'Running' ELSE 'Cancelled' END AS status) AS s
"""

SEED_STATS = """
INSERT INTO function_stats (function_id, hour, scheduled, started, completed, failed, cancelled,
                            skipped, retries, queue_delay_ms, duration_ms, duration_count,
                            duration_histogram)
SELECT f, date_trunc('hour', now()) - h * interval '1 hour', 30, 30, 21, 5, 1, 0, 3, 600,
       30000, 27, %(histogram)s::bigint[]
  FROM unnest(%(function_ids)s::text[]) AS f, generate_series(0, 167) AS h
"""


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def admin(stmt: sql.Composed) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(stmt)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def function_config(slug: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:9/api/inngest?fnId={slug}&stepId=step"
    return {"id": slug, "name": slug, "triggers": [{"event": f"bench/{slug}"}],
            "concurrency": [{"limit": 5, "key": "event.data.user"}],
            "steps": {"step": {"id": "step", "name": "step",
                               "runtime": {"type": "http", "url": url}}}}  # fmt: skip


async def seed_registry(url: str) -> tuple[str, list[str]]:
    from app.registry import store as registry
    from app.store.db import connect
    from domain.function_config import parse_function_config

    now = datetime.now(UTC)
    fields = registry.AppFields(name="bench", url="http://127.0.0.1:9/api/inngest",
                                method="SERVE", sdk_language="py", sdk_version="0.5.18",
                                framework="fast_api", app_version=None, checksum="x")  # fmt: skip
    configs = [
        parse_function_config(function_config(f"bench-fn-{i:02d}"), validate_expression=str)
        for i in range(FUNCTIONS)
    ]
    conn = await connect(url, autocommit=False)
    try:
        async with conn.transaction():
            app_id = await registry.upsert_app(conn, fields, now)
            await registry.sync_functions(conn, app_id, configs, now)
        functions = await registry.list_functions(conn, app_id)
    finally:
        await conn.close()
    return app_id, [f.id for f in sorted(functions, key=lambda f: f.slug)]


def seed(url: str, runs: int, events: int) -> dict[str, Any]:
    from projections.stats import DURATION_BOUNDS_MS

    app_id, function_ids = asyncio.run(seed_registry(url))
    params = {
        "fns": FUNCTIONS, "events": events, "runs": runs, "spacing": SPAN_MS // events,
        "now_ms": int(time.time() * 1000) - 60_000, "app_id": app_id,
        "function_ids": function_ids,
        "histogram": [3] * 9 + [0] * (len(DURATION_BOUNDS_MS) + 1 - 9),
    }  # fmt: skip
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(B32)
        for name, statement in (("events", SEED_EVENTS), ("runs", SEED_RUNS),
                                ("function_stats", SEED_STATS)):  # fmt: skip
            t0 = time.perf_counter()
            conn.execute(statement, params)  # type: ignore[arg-type]
            timings[name] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE events")
        conn.execute("VACUUM ANALYZE runs")
        conn.execute("VACUUM ANALYZE function_stats")
        timings["vacuum_analyze"] = round(time.perf_counter() - t0, 1)
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                  for t in ("events", "runs")}  # fmt: skip
        oldest = conn.execute("SELECT min(internal_id) FROM events").fetchone()[0]  # type: ignore[index]
    return {"function_ids": function_ids, "seconds": timings, "counts": counts,
            "oldest_event": oldest}  # fmt: skip


# --- the server process ---


def serve(database_url: str, port: int) -> None:
    """``--serve``: Stepwell with the UI mounted, no workers (nothing to run), on ``port``."""
    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    settings = Settings(run_workers=False, discovery=False, poll=False, port=port)
    app = create_app(settings, database_url)
    if not any(getattr(r, "path", None) == "/runs" for r in app.routes):
        from app.ui import routes  # until app/main.py mounts the UI itself

        for router in routes():
            app.register(router)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / "ui_pages_server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", database_url, str(port)], stdout=log,
        stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: see {LOGS / 'ui_pages_server.log'}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("server did not start")


# --- measuring ---


def timed(fn: Callable[[], Any], iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))]


def next_link(html: str) -> str:
    found = re.search(r'rel="next" href="([^"]+)"', html)
    assert found, "the page has no next link"
    return unescape(found.group(1))


def measure(url: str, base: str, seeded: dict[str, Any], iterations: int) -> dict[str, Any]:
    fn3 = seeded["function_ids"][3]
    six_days_ago = datetime.now(UTC) - timedelta(days=6)
    with psycopg.connect(url, autocommit=True) as conn, httpx.Client(base_url=base) as http:
        deep_run = conn.execute(
            "SELECT run_id FROM runs WHERE queued_at < %s ORDER BY queued_at DESC LIMIT 1",
            (six_days_ago,),
        ).fetchone()[0]  # type: ignore[index]
        deep_event = conn.execute(
            "SELECT internal_id FROM events WHERE received_at < %s "
            "ORDER BY internal_id DESC LIMIT 1", (six_days_ago,),
        ).fetchone()[0]  # type: ignore[index]  # fmt: skip

        def get(path: str, rows: str = "<tr data-") -> Callable[[], None]:
            def fetch() -> None:
                response = http.get(path)
                assert response.status_code == 200, (path, response.status_code)
                assert rows in response.text, path

            return fetch

        page2 = next_link(http.get("/runs").text)
        # A page six days back: the cursor of a run queued then (any page's cursor format).
        deep_runs = next_link(http.get(f"/runs?range=all&after={_cursor_of(conn, deep_run)}").text)
        cases: dict[str, Callable[[], Any]] = {
            "SELECT 1 round trip (baseline)": lambda: conn.execute("SELECT 1").fetchone(),
            "GET /health (HTTP baseline)": get("/health", rows=""),
            "runs list, page 1 (last 7 days)": get("/runs"),
            "runs list, live fragment": get("/runs?fragment=1"),
            "runs list, page 2 (cursor)": get(page2),
            "runs list, 6 days deep (cursor)": get(deep_runs),
            "runs list, Failed + function, 30 days": get(
                f"/runs?status=Failed&function={fn3}&range=30d"
            ),
            "events stream, page 1 (+ runs of each)": get("/events"),
            "events stream, by name": get("/events?name=bench/bench-fn-07"),
            "events stream, 6 days deep (cursor)": get(f"/events?before={deep_event}"),
            "event page": get(f"/events/{deep_event}", rows="Payload"),
            "functions list (24 h counts)": get("/functions"),
            "function page (config, counts, recent runs)": get("/functions/bench-fn-03"),
        }
        timings = {name: timed(fn, iterations, warmup=20) for name, fn in cases.items()}
    select1 = pct(timings["SELECT 1 round trip (baseline)"], 50)
    health = pct(timings["GET /health (HTTP baseline)"], 50)
    return {
        "rows": [
            {
                "case": name,
                "p50_ms": round(pct(v, 50), 2),
                "p99_ms": round(pct(v, 99), 2),
                "p50_over_select1": round(pct(v, 50) / select1, 1),
                "p50_over_health": round(pct(v, 50) / health, 1),
            }
            for name, v in timings.items()
        ]
    }


def _cursor_of(conn: psycopg.Connection[Any], run_id: str) -> str:
    from app.store import read_queries as rq
    from app.ui.filters import encode_cursor

    row = conn.execute("SELECT queued_at FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return encode_cursor(rq.RunPosition(at=row[0], run_id=run_id))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    assert args.events >= args.runs * 10, "every run is started by every 10th event"
    from app.store.migrate import upgrade

    name = f"stepwell_bench_ui_{os.getpid()}_{uuid.uuid4().hex[:4]}"
    admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_db(ADMIN, name)
    server = None
    try:
        upgrade(url)
        t0 = time.perf_counter()
        seeded = seed(url, args.runs, args.events)
        seed_s = time.perf_counter() - t0
        server, base = start_server(url)
        result = measure(url, base, seeded, args.iterations)
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        if not args.keep:
            admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    result = {
        "bench": "ui_pages", **seeded["counts"], "iterations": args.iterations,
        "seed_seconds": round(seed_s, 1), "seed_breakdown_s": seeded["seconds"], **result,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS.relative_to(ROOT)}")


def report(result: dict[str, Any]) -> None:
    width = max(len(r["case"]) for r in result["rows"])
    print(
        f"dev UI over {result['runs']:,} runs and {result['events']:,} events "
        f"(seeded in {result['seed_seconds']} s); {result['iterations']} GETs each, sequential"
    )
    print(f"{'case':<{width}}  {'p50 ms':>8}  {'p99 ms':>8}  {'/ SELECT 1':>10}  {'/ health':>8}")
    for r in result["rows"]:
        print(
            f"{r['case']:<{width}}  {r['p50_ms']:>8.2f}  {r['p99_ms']:>8.2f}  "
            f"{r['p50_over_select1']:>9.1f}x  {r['p50_over_health']:>7.1f}x"
        )


if __name__ == "__main__":
    main()
