"""Shared fixtures: a real PostgreSQL, migrated once into a template, cloned per test.

The server is ``STEPWELL_TEST_DATABASE_URL`` if set, else ``127.0.0.1:5432`` (user postgres),
else an embedded PostgreSQL started for the session.  The template is built with the shipped
Alembic revisions (never ``create_all``), and each test gets ``CREATE DATABASE … TEMPLATE``.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from app.store.db import AsyncConn, connect
from app.store.migrate import upgrade

DEFAULT_LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"
_counter = itertools.count()


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("STEPWELL_TEST_DATABASE_URL")
    if url:
        yield _with_db(url, "postgres")
        return
    if _reachable(DEFAULT_LOCAL):
        yield DEFAULT_LOCAL
        return
    from app.embedded import start_embedded

    embedded_url, handle = start_embedded(tmp_path_factory.mktemp("pg"))
    yield _with_db(embedded_url, "postgres")
    del handle


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    name = f"stepwell_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    upgrade(_with_db(pg_admin_url, name))
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def cloned_database(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh database cloned from the migrated template; dropped afterwards."""
    name = f"stepwell_t_{os.getpid()}_{next(_counter)}"
    ident = sql.Identifier(name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident, sql.Identifier(template_db))
        )
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    with cloned_database(pg_admin_url, template_db) as url:
        yield url


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (migration tests)."""
    name = f"stepwell_e_{os.getpid()}_{next(_counter)}"
    ident = sql.Identifier(name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    yield _with_db(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[AsyncConn]:
    c = await connect(db_url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def count_rows(url: str, table: str, where: str = "TRUE", params: Any = ()) -> int:
    with psycopg.connect(url) as c:
        row = c.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()
        assert row is not None
        return int(row[0])
