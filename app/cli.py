"""The ``stepwell`` command: ``dev``, ``start``, ``worker``, ``migrate``, ``replay`` and
``projections rebuild``.

Every flag has a ``STEPWELL_*`` environment twin (see ``--help``); the Inngest names
``INNGEST_SIGNING_KEY``, ``INNGEST_SIGNING_KEY_FALLBACK`` and ``INNGEST_EVENT_KEY`` are read
too.  Operational failures (bad database URL, missing keys) end with one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app import entrypoints
from app.entrypoints import CliError
from app.settings import Mode, Settings, env_value, from_environ

DESCRIPTION = "Stepwell: a durable-function server that speaks the Inngest protocol."


def _common_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        help="PostgreSQL URL [STEPWELL_DATABASE_URL]; "
        "without one, an embedded PostgreSQL is started in --data-dir",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="embedded PostgreSQL data directory [STEPWELL_DATA_DIR, default ./.stepwell]",
    )


def _common_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        help="queue items executed concurrently; 0 serves HTTP only and leaves the queue to "
        "`stepwell worker` processes [STEPWELL_WORKERS, default 32]",
    )
    p.add_argument(
        "--retry-interval",
        type=float,
        help="fixed retry delay in seconds instead "
        "of the backoff table, for tests [STEPWELL_RETRY_INTERVAL]",
    )
    p.add_argument(
        "--lease-seconds",
        type=float,
        help="queue lease length: how long a dead worker's items stay claimed "
        "[STEPWELL_LEASE_SECONDS, default 30]",
    )
    p.add_argument(
        "--call-timeout",
        type=float,
        help="seconds to wait for an SDK's reply before the attempt fails "
        "[STEPWELL_CALL_TIMEOUT, default 7200]",
    )


def _connections(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine-connections",
        type=int,
        help="database connections for queue claims and run transitions "
        "[STEPWELL_ENGINE_CONNECTIONS, default max(8, workers/4 + 2)]",
    )
    p.add_argument(
        "--ingest-connections",
        type=int,
        help="database connections for client writes (events, sync, cancellations) "
        "[STEPWELL_INGEST_CONNECTIONS, default 6]",
    )
    p.add_argument(
        "--read-connections",
        type=int,
        help="database connections for client reads (GraphQL, REST, UI) "
        "[STEPWELL_READ_CONNECTIONS, default 4]",
    )
    p.add_argument(
        "--pool-wait",
        type=float,
        dest="pool_wait_seconds",
        help="seconds a request waits for a database connection before it is answered 503 "
        "[STEPWELL_POOL_WAIT, default 5]",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        dest="read_timeout_seconds",
        help="statement timeout of one read query, in seconds [STEPWELL_READ_TIMEOUT, default 15]",
    )


def _common_http(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to bind [STEPWELL_HOST, default 127.0.0.1]")
    p.add_argument("--port", type=int, help="HTTP port [STEPWELL_PORT, default 8288]")
    p.add_argument(
        "-u",
        "--sdk-url",
        action="append",
        default=[],
        dest="sdk_urls",
        help="SDK app URL to sync (repeatable) [STEPWELL_SDK_URLS, comma-separated]",
    )
    p.add_argument(
        "--no-discovery", action="store_true", help="do not probe local ports for SDK apps"
    )
    p.add_argument("--no-poll", action="store_true", help="do not re-sync apps periodically")
    p.add_argument(
        "--poll-interval",
        type=float,
        help="seconds between app re-syncs [STEPWELL_POLL_INTERVAL, default 5]",
    )


def _keys(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--signing-key", help="hex signing key [STEPWELL_SIGNING_KEY, INNGEST_SIGNING_KEY]"
    )
    p.add_argument(
        "--signing-key-fallback",
        help="previous signing key, accepted during a "
        "rotation [STEPWELL_SIGNING_KEY_FALLBACK, INNGEST_SIGNING_KEY_FALLBACK]",
    )
    p.add_argument(
        "--event-key",
        action="append",
        default=[],
        dest="event_keys",
        help="accepted event key (repeatable) [STEPWELL_EVENT_KEY, "
        "INNGEST_EVENT_KEY, comma-separated]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepwell", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev = sub.add_parser(
        "dev",
        help="run a local dev server (open, embedded PostgreSQL by default)",
        description="Run the dev server: HTTP API, dev UI and "
        "workers in one process. Open (no keys), like `inngest dev`. Without "
        "a database URL an embedded PostgreSQL is started in --data-dir.",
    )
    for add in (_common_db, _common_http, _common_engine, _connections):
        add(dev)
    start = sub.add_parser(
        "start",
        help="run a self-hosted server (signing and event keys required)",
        description="Run Stepwell self-hosted: every request "
        "to SDKs is signed, SDK calls and the APIs require the signing key, "
        "events require an event key. Refuses to start without keys.",
    )
    for add in (_common_db, _common_http, _common_engine, _connections, _keys):
        add(start)
    worker = sub.add_parser(
        "worker",
        help="run queue workers only (scale out against one database)",
        description="Run queue workers without the HTTP "
        "server. Any number may run against one database.",
    )
    for add in (_common_db, _common_engine, _connections):
        add(worker)
    worker.add_argument(
        "--signing-key",
        help="signing key used to sign SDK requests [STEPWELL_SIGNING_KEY, INNGEST_SIGNING_KEY]",
    )
    migrate = sub.add_parser(
        "migrate",
        help="apply database migrations (a no-op when up to date)",
        description="Upgrade the database schema to the latest "
        "revision. Running it on an up-to-date database changes nothing.",
    )
    _common_db(migrate)
    _read_side_commands(sub)
    return parser


def _read_side_commands(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="print a run's history as a timeline, or its state after a transition",
        description="Print the transitions of a run's history "
        "(time, transition, step, attempt, outcome), or with --state-after N the run's state "
        "after transition N as JSON. Reads the database; changes nothing.",
    )
    _common_db(replay)
    replay.add_argument("run_id", metavar="RUN_ID", help="the run's id (a ULID)")
    replay.add_argument(
        "--state-after",
        type=int,
        metavar="N",
        help="print the folded run state after transition N (0: before the first) as JSON",
    )
    replay.add_argument("--json", action="store_true", help="machine-readable JSON output")
    projections = sub.add_parser(
        "projections",
        help="manage the views derived from run history",
        description="Manage the read models (runs view, function stats).",
    )
    actions = projections.add_subparsers(dest="action", required=True, metavar="ACTION")
    rebuild = actions.add_parser(
        "rebuild",
        help="recompute every view from run history",
        description="Recompute the runs view and the function "
        "stats from run history in one transaction. Readers keep seeing the old views until "
        "it commits; run transitions that would change the runs view wait for it.",
    )
    _common_db(rebuild)


def _split(values: Sequence[str], env: str | None) -> tuple[str, ...]:
    items = list(values) or ([v.strip() for v in env.split(",")] if env else [])
    return tuple(v for v in items if v)


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    def pick(name: str, env_name: str, *aliases: str, cast: Any = str) -> Any:
        value = getattr(args, name, None)
        if value is not None:
            return value
        raw = env_value(env_name, env, *aliases)
        return cast(raw) if raw is not None else None

    mode: Mode = args.command if args.command in ("dev", "start", "worker") else "dev"
    values: dict[str, Any] = {
        "mode": mode,
        "database_url": pick("database_url", "DATABASE_URL"),
        "data_dir": pick("data_dir", "DATA_DIR", cast=Path),
        "host": pick("host", "HOST"),
        "port": pick("port", "PORT", cast=int),
        "signing_key": pick("signing_key", "SIGNING_KEY", "INNGEST_SIGNING_KEY"),
        "signing_key_fallback": pick(
            "signing_key_fallback", "SIGNING_KEY_FALLBACK", "INNGEST_SIGNING_KEY_FALLBACK"
        ),
        "event_keys": _split(
            getattr(args, "event_keys", []) or [], env_value("EVENT_KEY", env, "INNGEST_EVENT_KEY")
        ),
        "sdk_urls": _split(getattr(args, "sdk_urls", []) or [], env_value("SDK_URLS", env)),
        "poll_interval": pick("poll_interval", "POLL_INTERVAL", cast=float),
        "retry_interval": pick("retry_interval", "RETRY_INTERVAL", cast=float),
        "workers": pick("workers", "WORKERS", cast=int),
        "lease_seconds": pick("lease_seconds", "LEASE_SECONDS", cast=float),
        "call_timeout": pick("call_timeout", "CALL_TIMEOUT", cast=float),
        "engine_connections": pick("engine_connections", "ENGINE_CONNECTIONS", cast=int),
        "ingest_connections": pick("ingest_connections", "INGEST_CONNECTIONS", cast=int),
        "read_connections": pick("read_connections", "READ_CONNECTIONS", cast=int),
        "pool_wait_seconds": pick("pool_wait_seconds", "POOL_WAIT", cast=float),
        "read_timeout_seconds": pick("read_timeout_seconds", "READ_TIMEOUT", cast=float),
        "discovery": not getattr(args, "no_discovery", False),
        "poll": not getattr(args, "no_poll", False),
        "run_workers": True,
    }
    return Settings(**{k: v for k, v in values.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = settings_from(args, from_environ())
        if args.command == "replay":
            entrypoints.replay(settings, args.run_id, args.state_after, as_json=args.json)
        elif args.command == "projections":
            entrypoints.rebuild_projections(settings)
        else:
            entrypoints.run(args.command, settings)
    except CliError as exc:
        print(f"stepwell: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
