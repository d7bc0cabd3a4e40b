"""The embedded PostgreSQL of ``stepwell dev``: the ``pgserver`` package's bundled server.

The data directory persists across restarts, so runs survive them.  Several processes may use
one data directory: pgserver reference-counts them and stops the server when the last exits.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg

from app.store.urls import libpq_url

DATABASE = "stepwell"
logging.getLogger("pgserver").setLevel(logging.WARNING)


class EmbeddedPostgresError(RuntimeError):
    pass


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or join) the server in ``data_dir/pgdata``; return its URL and the handle.

    Keep the handle alive for as long as the database is used.
    """
    import pgserver  # imported lazily: only dev mode without a URL needs it

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises bare exceptions with the initdb/pg_ctl output
        message = f"could not start embedded PostgreSQL in {pgdata}: {exc}"
        raise EmbeddedPostgresError(message) from exc
    _ensure_database(server.get_uri("postgres"))
    return str(server.get_uri(DATABASE)), server


def _ensure_database(admin_url: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
