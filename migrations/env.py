"""Alembic environment: migrates the database named by the config's ``sqlalchemy.url``.

The URL is set by ``app.store.migrate`` (``stepwell migrate``), by ``-x url=...``, or read from
``STEPWELL_DATABASE_URL``.  The target metadata is the one Stepwell ships, so
``alembic check`` proves the revisions and the tables agree.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from app.store.tables import metadata
from app.store.urls import sqlalchemy_url

config = context.config


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("STEPWELL_DATABASE_URL")
    )
    if not url:
        raise SystemExit("no database URL: set STEPWELL_DATABASE_URL or pass -x url=...")
    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
