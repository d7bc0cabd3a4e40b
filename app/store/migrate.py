"""Schema migrations: run Alembic's ``upgrade head`` against a database URL.

The revisions ship inside the ``migrations`` package, so ``stepwell migrate`` works from an
installed wheel as well as from a checkout.  Upgrading an up-to-date database is a no-op.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

import migrations
from app.store.urls import libpq_url, sqlalchemy_url


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or refused the connection; the message says why."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def check_reachable(url: str) -> None:
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to the database: {first_line}") from exc


def upgrade(url: str) -> None:
    check_reachable(url)
    command.upgrade(alembic_config(url), "head")


def current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()
