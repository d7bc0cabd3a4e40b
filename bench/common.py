"""Shared harness: scratch databases, server/SDK processes, Postgres and CPU counters, results.

Everything here talks to 127.0.0.1 only and bounds what it waits for: every wait has a
deadline, every process started is stopped (SIGTERM, then SIGKILL) when its context exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- results -------------------------------------------------------------------------------


@dataclass
class Row:
    """One reported figure, always with the same-run baseline it is compared to."""

    bench: str
    metric: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    #: value / baseline unless the benchmark says otherwise.
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.baseline:
            self.ratio = self.value / self.baseline


@dataclass
class BenchResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def add(self, metric: str, value: float | None, unit: str, **kw: Any) -> Row:
        row = Row(self.name, metric, value, unit, **kw)
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": [asdict(r) for r in self.rows],
            "details": self.details,
            "error": self.error,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class Ctx:
    """What every benchmark gets: where Postgres is, how big to go, where to log."""

    pg_admin_url: str
    quick: bool
    out_dir: Path
    soak_minutes: float
    template_db: str = ""
    shared: dict[str, Any] = field(default_factory=dict)  # results other benchmarks reuse

    @property
    def log_dir(self) -> Path:
        d = self.out_dir / "logs"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- statistics ----------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no data."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return float(s[k])


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --- databases ------------------------------------------------------------------------------


def with_db(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def dbname_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def create_template(ctx: Ctx) -> None:
    """Migrate Stepwell's schema once into a template; scratch databases are cloned from it."""
    from app.store.migrate import upgrade

    name = f"stepwell_bench_tpl_{os.getpid()}"
    admin_exec(ctx.pg_admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), name)
    admin_exec(ctx.pg_admin_url, sql.SQL("CREATE DATABASE {}"), name)
    upgrade(with_db(ctx.pg_admin_url, name))
    ctx.template_db = name


def drop_template(ctx: Ctx) -> None:
    if ctx.template_db:
        admin_exec(
            ctx.pg_admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), ctx.template_db
        )


def admin_exec(admin_url: str, stmt: sql.SQL, *names: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(stmt.format(*(sql.Identifier(n) for n in names)))


@contextlib.contextmanager
def scratch_db(ctx: Ctx, label: str, *, migrated: bool = True) -> Iterator[str]:
    """A fresh database (a clone of the migrated template), dropped afterwards."""
    name = f"stepwell_bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:4]}"
    if migrated:
        admin_exec(
            ctx.pg_admin_url, sql.SQL("CREATE DATABASE {} TEMPLATE {}"), name, ctx.template_db
        )
    else:
        admin_exec(ctx.pg_admin_url, sql.SQL("CREATE DATABASE {}"), name)
    try:
        yield with_db(ctx.pg_admin_url, name)
    finally:
        admin_exec(ctx.pg_admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), name)


def query_one(url: str, q: str, params: Sequence[Any] = ()) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(q, params).fetchone()
    return None if row is None else row[0]


DB_STATS = """
SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_returned,
       tup_fetched, blks_read, blks_hit
  FROM pg_stat_database WHERE datname = current_database()
"""

TABLE_STATS = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, n_live_tup, n_dead_tup
  FROM pg_stat_user_tables
"""


def db_stats(url: str) -> dict[str, Any]:
    """pg_stat_database + pg_stat_user_tables for the database of ``url`` (cumulative)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(DB_STATS)
        cols = [d.name for d in cur.description or []]
        row = cur.fetchone() or ()
        out: dict[str, Any] = dict(zip(cols, (int(v) for v in row), strict=False))
        tables = {}
        for r in conn.execute(TABLE_STATS).fetchall():
            tables[r[0]] = {
                "ins": r[1],
                "upd": r[2],
                "del": r[3],
                "hot_upd": r[4],
                "live": r[5],
                "dead": r[6],
            }
        out["tables"] = tables
    return out


def stats_delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: b[k] - a.get(k, 0) for k in b if k != "tables"}
    out["tables"] = {
        t: {
            k: v - a["tables"].get(t, {}).get(k, 0)
            for k, v in cols.items()
            if k not in ("live", "dead")
        }
        for t, cols in b["tables"].items()
    }
    return out


def backend_pids(url: str) -> list[int]:
    """PIDs of the Postgres backends connected to the database of ``url`` (not our own)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [r[0] for r in rows]


class CpuMeter:
    """user+sys CPU seconds of a set of processes between ``start`` and ``stop``."""

    def __init__(self, pids: Callable[[], Sequence[int]]) -> None:
        self.pids = pids
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            t = psutil.Process(pid).cpu_times()
            return float(t.user + t.system)
        except (psutil.Error, OSError):
            return None

    def sample(self) -> dict[int, float]:
        out = {}
        for pid in self.pids():
            c = self._cpu(pid)
            if c is not None:
                out[pid] = c
        return out

    def start(self) -> None:
        self.base = self.sample()

    def stop(self) -> float:
        self.last = self.sample()
        return sum(v - self.base.get(pid, 0.0) for pid, v in self.last.items())


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPWELL_", "INNGEST_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class Proc:
    def __init__(self, popen: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.popen = popen
        self.url = url
        self.log = log
        self.ps = psutil.Process(popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_healthy(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.log.name}: process exited early:\n{self.tail()}")
            if path.startswith("log:"):  # no port: wait for a line in the process's log
                if path[4:] in self.tail(200):
                    return
                time.sleep(0.05)
                continue
            try:
                if path == "tcp":  # no HTTP: accepting a connection is enough
                    port = int(self.url.rsplit(":", 1)[1])
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.url}{path} not healthy after {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextlib.contextmanager
def spawn(
    args: Sequence[str], *, port: int, log: Path, health: str, env: dict[str, str] | None = None
) -> Iterator[Proc]:
    handle = log.open("ab")
    popen = subprocess.Popen(
        list(args), stdout=handle, stderr=subprocess.STDOUT, env=env or clean_env(), cwd=ROOT
    )
    proc = Proc(popen, f"http://127.0.0.1:{port}", log)
    try:
        proc.wait_healthy(health)
        yield proc
    finally:
        proc.stop()
        handle.close()


@contextlib.contextmanager
def stepwell_server(ctx: Ctx, db_url: str, name: str, *extra: str) -> Iterator[Proc]:
    port = free_port()
    args = [
        PY,
        "-m",
        "app",
        "dev",
        "--database-url",
        db_url,
        "--port",
        str(port),
        "--no-discovery",
        "--no-poll",
        *extra,
    ]
    with spawn(args, port=port, log=ctx.log_dir / f"{name}-server.log", health="/health") as p:
        yield p


@contextlib.contextmanager
def stub_sdk(ctx: Ctx, name: str) -> Iterator[Proc]:
    port = free_port()
    args = [PY, "-m", "bench.stub_sdk", "--port", str(port)]
    with spawn(args, port=port, log=ctx.log_dir / f"{name}-stub.log", health="/health") as p:
        yield p


@contextlib.contextmanager
def stepwell_worker(ctx: Ctx, db_url: str, name: str) -> Iterator[Proc]:
    """An extra ``stepwell worker`` process (queue workers only) on the same database."""
    args = [PY, "-m", "app", "worker", "--database-url", db_url]
    log = ctx.log_dir / f"{name}-worker.log"
    with spawn(args, port=0, log=log, health="log:stepwell worker running") as p:
        yield p


def stub_function(fn_id: str, event: str, stub_url: str) -> dict[str, Any]:
    return {
        "id": fn_id,
        "name": fn_id,
        "triggers": [{"event": event}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": f"{stub_url}/api?fnId={fn_id}&stepId=step"},
            }
        },
    }


def register(server_url: str, app_url: str, functions: list[dict[str, Any]]) -> None:
    body = {
        "appName": "bench",
        "url": f"{app_url}/api",
        "sdk": "py:v0.5.19",
        "framework": "bench-stub",
        "v": "0.1",
        "functions": functions,
    }
    r = httpx.post(f"{server_url}/fn/register", json=body, timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"register failed: {r.status_code} {r.text}")


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def wait_queue_empty(url: str, timeout: float) -> bool:
    """Wait until ``queue_items`` is empty (e.g. lifecycle events of a finished burst)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return wait_until(
            lambda: (conn.execute("SELECT count(*) FROM queue_items").fetchone() or (0,))[0] == 0,
            timeout,
            0.05,
        )


def completed_runs(conn: psycopg.Connection[Any], slug: str | None = None) -> int:
    if slug is None:
        row = conn.execute("SELECT count(*) FROM runs WHERE status = 'Completed'").fetchone()
    else:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE status = 'Completed' AND function_slug = %s", (slug,)
        ).fetchone()
    return int(row[0]) if row else 0


def final_runs(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
    return {r[0]: int(r[1]) for r in rows}


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        models = [
            ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")
        ]
        mhz = [ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("cpu MHz")]
        info["cpu_model"] = models[0] if models else "?"
        info["cpu_mhz"] = mhz[0] if mhz else "?"
    except OSError:
        pass
    vm = psutil.virtual_memory()
    info["mem_total_gb"] = round(vm.total / 2**30, 1)
    info["mem_available_gb"] = round(vm.available / 2**30, 1)
    info["loadavg"] = os.getloadavg()
    info["python"] = sys.version.split()[0]
    try:
        info["postgres"] = query_one(DEFAULT_PG, "SHOW server_version")
        info["pg_synchronous_commit"] = query_one(DEFAULT_PG, "SHOW synchronous_commit")
        info["pg_shared_preload_libraries"] = query_one(DEFAULT_PG, "SHOW shared_preload_libraries")
        info["pg_autovacuum"] = query_one(DEFAULT_PG, "SHOW autovacuum")
    except psycopg.Error:
        pass
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "domain", "projections", "migrations"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        # Others may be editing the server while this runs: say what was measured.
        info["server_tree"] = f"dirty ({len(dirty.splitlines())} files)" if dirty else "clean"
    except OSError:
        pass
    return info


def server_version() -> str:
    """HEAD and whether the server's sources differ from it (others may commit mid-run)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "domain", "projections", "migrations"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "?"
    return head + (f"+{len(dirty.splitlines())} dirty" if dirty else "")


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
