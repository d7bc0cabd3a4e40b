"""Runs listing: latency of the GraphQL ``runs`` query over a 100k-run ``runs`` view.

A scratch database is migrated, given one app with 20 functions (registered through the
registry, so configs parse) and 100,000 runs COPY'd straight into the ``runs`` view: statuses
70 % Completed, 15 % Failed, 10 % Running, 5 % Cancelled, queued over the last 7 days, spread
over the functions.  Then, in-process (the ASGI app driven by httpx on one event loop, no
network), it times:

* ``runs`` filtered by status + function, ``first: 40``, with ``totalCount`` (page 1);
* the next page through ``pageInfo.endCursor`` (page 2);
* ``runs`` filtered by status only, ``first: 40`` (page 1);
* the keyset SQL alone for page 1 and the ``totalCount`` SQL alone (``read_queries``), to
  show the GraphQL share;

each against the same-run baseline of a ``SELECT 1`` round trip on the same pool.  Prints a
table and writes ``bench/results/runs_query.json``.

Run: ``.venv/bin/python bench/runs_query.py [--runs N] [--iterations N] [--keep]``
(``STEPWELL_BENCH_PG`` overrides the admin URL ``postgresql://postgres@127.0.0.1:5432/postgres``;
``--proposed-indexes`` adds the indexes the read side would like and writes
``runs_query_proposed.json`` instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from litestar import Litestar  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from ulid import ULID  # noqa: E402

from app.graphql import PATH, ROUTES  # noqa: E402
from app.main import Services, create_app  # noqa: E402
from app.registry import store as registry  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store import read_queries as rq  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402
from domain.function_config import parse_function_config  # noqa: E402

ADMIN = os.environ.get("STEPWELL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = ROOT / "bench" / "results" / "runs_query.json"
FUNCTIONS = 20
STATUSES = (("Completed", 70), ("Failed", 15), ("Running", 10), ("Cancelled", 5))

#: Indexes this benchmark can add (``--proposed-indexes``) to show what they would buy: the
#: runs of an event (GraphQL ``event.functionRuns``, ``stream``) and counting/paging runs of
#: one function by status without visiting the heap.
PROPOSED_INDEXES = (
    "CREATE INDEX ix_runs_event_ids ON runs USING gin (event_ids)",
    "CREATE INDEX ix_runs_function_id_status_queued_at ON runs "
    "(function_id, status, queued_at, run_id)",
)

RUNS_QUERY = """query($filter: RunsFilterV2!, $after: String, $count: Boolean!) {
  runs(first: 40, after: $after, filter: $filter,
       orderBy: [{field: QUEUED_AT, direction: DESC}]) {
    totalCount @include(if: $count)
    edges { cursor node { id status queuedAt startedAt endedAt eventName output
                          function { name slug } } }
    pageInfo { hasNextPage endCursor } } }"""


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def admin(stmt: sql.Composed) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(stmt)


def config(slug: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:9/api/inngest?fnId={slug}&stepId=step"
    return {"id": slug, "name": slug, "triggers": [{"event": f"bench/{slug}"}],
            "steps": {"step": {"id": "step", "name": "step",
                               "runtime": {"type": "http", "url": url}}}}  # fmt: skip


async def seed_registry(services: Services) -> tuple[str, list[str]]:
    now = datetime.now(UTC)
    fields = registry.AppFields(name="bench", url="http://127.0.0.1:9/api/inngest",
                                method="SERVE", sdk_language="py", sdk_version="0.5.18",
                                framework=None, app_version=None, checksum="x")  # fmt: skip
    configs = [
        parse_function_config(config(f"bench-fn-{i:02d}"), validate_expression=lambda _: None)
        for i in range(FUNCTIONS)
    ]
    async with services.db.connection() as conn, conn.transaction():
        app_id = await registry.upsert_app(conn, fields, now)
        await registry.sync_functions(conn, app_id, configs, now)
        functions = await registry.list_functions(conn, app_id)
    return app_id, [f.id for f in sorted(functions, key=lambda f: f.slug)]


def seed_runs(
    url: str, app_id: str, functions: list[str], count: int, *, proposed: bool = False
) -> None:
    rng = random.Random(42)
    now = datetime.now(UTC)
    weights = [w for _, w in STATUSES]
    columns = ("run_id, function_id, function_slug, function_version, app_id, status, queued_at, "
               "started_at, ended_at, event_ids, event_name, output")  # fmt: skip
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY runs ({columns}) FROM STDIN") as copy:
            for i in range(count):
                queued = now - timedelta(seconds=rng.uniform(60, 7 * 86400))
                status = rng.choices([s for s, _ in STATUSES], weights)[0]
                fn = i % len(functions)
                started = queued + timedelta(milliseconds=rng.randint(1, 500))
                ended = started + timedelta(milliseconds=rng.randint(5, 5000))
                final = status in ("Completed", "Failed", "Cancelled")
                output = {"ok": i} if status == "Completed" else None
                copy.write_row((
                    str(ULID.from_datetime(queued)), functions[fn], f"bench-fn-{fn:02d}", 1,
                    app_id, status, queued, started, ended if final else None,
                    [str(ULID.from_datetime(queued))], f"bench/bench-fn-{fn:02d}",
                    None if output is None else Jsonb(output),
                ))  # fmt: skip
        conn.commit()
        for statement in PROPOSED_INDEXES if proposed else ():
            conn.execute(statement)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE runs")


async def timed(fn: Callable[[], Awaitable[Any]], iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))]


async def measure(url: str, runs: int, iterations: int, *, proposed: bool) -> dict[str, Any]:
    app: Litestar = create_app(Settings(run_workers=False, discovery=False, poll=False), url)
    if not any(route.path == PATH for route in app.routes):
        for handler in ROUTES:
            app.register(handler)
    # One event loop for the app, its pool and the client: an ASGI transport, no thread hops.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # ASGI, typed apart
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://b") as client,
    ):
        services: Services = app.state.services
        t0 = time.perf_counter()
        app_id, functions = await seed_registry(services)
        await asyncio.to_thread(seed_runs, url, app_id, functions, runs, proposed=proposed)
        seeded_s = time.perf_counter() - t0
        since = (datetime.now(UTC) - timedelta(days=8)).isoformat()
        by_fn = {"from": since, "status": ["COMPLETED"], "functionIDs": [functions[3]]}
        by_status = {"from": since, "status": ["FAILED"]}

        async def gql(filt: dict[str, Any], after: str | None, count: bool) -> dict[str, Any]:
            variables = {"filter": filt, "after": after, "count": count}
            response = await client.post(PATH, json={"query": RUNS_QUERY, "variables": variables})
            body: dict[str, Any] = response.json()
            assert response.status_code == 200 and not body.get("errors"), body
            page: dict[str, Any] = body["data"]["runs"]
            assert len(page["edges"]) == 40, page
            return page

        first = await gql(by_fn, None, True)
        cursor = first["pageInfo"]["endCursor"]
        order = rq.RunsOrder()
        sql_filter = rq.RunsFilter(
            since=datetime.fromisoformat(since),
            until=datetime.now(UTC),
            statuses=("Completed",),
            function_ids=(functions[3],),
        )

        async def select1() -> None:
            async with services.db.connection() as conn:
                await conn.execute("SELECT 1")

        async def sql_page() -> None:
            async with services.db.connection() as conn:
                await rq.list_runs(conn, sql_filter, order, limit=41)

        async def sql_count() -> None:
            async with services.db.connection() as conn:
                await rq.count_runs(conn, sql_filter)

        cases: dict[str, Callable[[], Awaitable[Any]]] = {
            "SELECT 1 round trip (baseline)": select1,
            "runs status+function, page 1 + totalCount": lambda: gql(by_fn, None, True),
            "runs status+function, page 2 (cursor)": lambda: gql(by_fn, cursor, False),
            "runs status only, page 1": lambda: gql(by_status, None, False),
            "keyset SQL alone, page 1": sql_page,
            "count SQL alone (totalCount)": sql_count,
        }
        timings = {name: await timed(fn, iterations, warmup=20) for name, fn in cases.items()}
    base = pct(timings["SELECT 1 round trip (baseline)"], 50)
    rows = [
        {"case": name, "p50_ms": round(pct(v, 50), 3), "p99_ms": round(pct(v, 99), 3),
         "p50_ratio_to_select1": round(pct(v, 50) / base, 1)}
        for name, v in timings.items()
    ]  # fmt: skip
    return {
        "bench": "runs_query",
        "runs": runs,
        "functions": FUNCTIONS,
        "proposed_indexes": list(PROPOSED_INDEXES) if proposed else [],
        "total_count_status_function": first["totalCount"],
        "iterations": iterations,
        "seed_seconds": round(seeded_s, 1),
        "rows": rows,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--proposed-indexes", action="store_true", help="add PROPOSED_INDEXES before measuring"
    )
    args = parser.parse_args()
    name = f"stepwell_bench_runs_query_{os.getpid()}_{uuid.uuid4().hex[:4]}"
    admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_db(ADMIN, name)
    try:
        upgrade(url)
        result = asyncio.run(
            measure(url, args.runs, args.iterations, proposed=args.proposed_indexes)
        )
    finally:
        if not args.keep:
            admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    width = max(len(r["case"]) for r in result["rows"])
    indexes = "proposed indexes added" if result["proposed_indexes"] else "existing indexes"
    print(
        f"runs view: {result['runs']:,} runs ({indexes}); status+function matches "
        f"{result['total_count_status_function']:,}; {result['iterations']} iterations each"
    )
    print(f"{'case':<{width}}  {'p50 ms':>8}  {'p99 ms':>8}  {'p50 / SELECT 1':>14}")
    for r in result["rows"]:
        print(
            f"{r['case']:<{width}}  {r['p50_ms']:>8.2f}  {r['p99_ms']:>8.2f}  "
            f"{r['p50_ratio_to_select1']:>13.1f}x"
        )
    out = RESULTS.with_name("runs_query_proposed.json") if args.proposed_indexes else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
