"""The registry tables (``apps``, ``functions``, ``function_versions``, ``function_triggers``).

Writes happen on sync: an app is upserted by name and keeps its id, functions are upserted by
slug and keep their UUIDs, a changed config bumps ``version`` and adds a ``function_versions``
row (so a run can always load the config it started with), trigger rows are rewritten, and
functions that vanished from a sync are archived (and revived if they come back).  Apps that
failed to sync before ever registering are "placeholders" named after their URL.  Reads serve
the engine: functions for an event name (one indexed lookup on trigger patterns), by slug or id,
at a version, and crons.  Stored configs passed validation when synced, so they are re-parsed
without the CEL check; parsed configs are cached by (id, version, content digest).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from app.store.db import AsyncConn
from domain.errors import InvalidFunctionConfig
from domain.function_config import (
    EventTrigger,
    FunctionConfig,
    parse_function_config,
    trigger_patterns,
)
from domain.ids import deterministic_uuid

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionRecord:
    id: str
    app_id: str
    app_name: str
    slug: str
    name: str
    version: int
    config: FunctionConfig
    archived: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRecord:
    id: str
    name: str
    url: str
    method: str
    sdk_language: str
    sdk_version: str
    framework: str | None
    app_version: str | None
    checksum: str | None
    error: str | None
    autodiscovered: bool
    created_at: datetime
    updated_at: datetime
    function_count: int

    @property
    def is_placeholder(self) -> bool:
        """A URL that never registered: it only holds the error of its last sync attempt."""
        return self.name == self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class AppFields:
    """What a registration says about its app."""

    name: str
    url: str
    method: str
    sdk_language: str
    sdk_version: str
    framework: str | None
    app_version: str | None
    checksum: str


# --- statements ---

LOCK_APP_SYNC = "SELECT pg_advisory_xact_lock(hashtextextended('stepwell:sync:' || %s, 0))"

UPSERT_APP = """
INSERT INTO apps (id, name, url, method, sdk_language, sdk_version, framework, app_version,
                  checksum, error, created_at, updated_at)
VALUES (%(id)s, %(name)s, %(url)s, %(method)s, %(sdk_language)s, %(sdk_version)s,
        %(framework)s, %(app_version)s, %(checksum)s, NULL, %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE
   SET url = EXCLUDED.url, method = EXCLUDED.method, sdk_language = EXCLUDED.sdk_language,
       sdk_version = EXCLUDED.sdk_version, framework = EXCLUDED.framework,
       app_version = EXCLUDED.app_version, checksum = EXCLUDED.checksum, error = NULL,
       updated_at = EXCLUDED.updated_at
RETURNING id
"""

APP_ID_BY_CHECKSUM = "SELECT id, error FROM apps WHERE name = %s AND checksum = %s"

SET_APP_ERROR = "UPDATE apps SET error = %s, updated_at = %s WHERE id = %s"

SET_ERROR_BY_URL = "UPDATE apps SET error = %s, updated_at = %s WHERE url = %s RETURNING id"

# A placeholder is named after its URL: ``apps.name`` is unique and required, and the SDK's
# first registration (by app name) deletes it.
UPSERT_PLACEHOLDER = """
INSERT INTO apps (id, name, url, error, autodiscovered, created_at, updated_at)
VALUES (%(id)s, %(url)s, %(url)s, %(error)s, %(auto)s, %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET error = EXCLUDED.error, updated_at = EXCLUDED.updated_at
"""

INSERT_PLACEHOLDER_IF_UNKNOWN = """
INSERT INTO apps (id, name, url, error, created_at, updated_at)
SELECT %(id)s, %(url)s, %(url)s, %(error)s, %(now)s, %(now)s
 WHERE NOT EXISTS (SELECT 1 FROM apps WHERE url = %(url)s)
ON CONFLICT (name) DO NOTHING
"""

DELETE_PLACEHOLDERS = "DELETE FROM apps WHERE url = %s AND name = url AND name <> %s"

MARK_AUTODISCOVERED = "UPDATE apps SET autodiscovered = 1 WHERE url = %s"

DELETE_APP = "DELETE FROM apps WHERE id = %s"

FUNCTIONS_FOR_SYNC = """
SELECT id, slug, version, config, archived_at IS NOT NULL, app_id
  FROM functions WHERE app_id = %s OR slug = ANY(%s)
   FOR UPDATE
"""

INSERT_FUNCTION = """
INSERT INTO functions (id, app_id, slug, name, version, config, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""

UPDATE_FUNCTION = """
UPDATE functions
   SET app_id = %s, name = %s, version = %s, config = %s, archived_at = NULL, updated_at = %s
 WHERE id = %s
"""

INSERT_FUNCTION_VERSION = """
INSERT INTO function_versions (function_id, version, config, created_at)
VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING
"""

DELETE_TRIGGERS = "DELETE FROM function_triggers WHERE function_id = ANY(%s)"

INSERT_TRIGGERS = """
INSERT INTO function_triggers (function_id, position, event_name, expression, cron, jitter)
SELECT * FROM unnest(%s::text[], %s::smallint[], %s::text[], %s::text[], %s::text[], %s::text[])
"""

ARCHIVE_FUNCTIONS = "UPDATE functions SET archived_at = %s, updated_at = %s WHERE id = ANY(%s)"

_SELECT_FUNCTION = """
SELECT f.id, f.app_id, a.name, f.slug, f.version, f.config, md5(f.config::text),
       f.archived_at IS NOT NULL
  FROM functions f JOIN apps a ON a.id = f.app_id
"""

FUNCTIONS_FOR_EVENT = (
    _SELECT_FUNCTION
    + """
 WHERE f.archived_at IS NULL
   AND f.id IN (SELECT function_id FROM function_triggers WHERE event_name = ANY(%s))
 ORDER BY f.slug
"""
)

FUNCTION_BY_SLUG_OR_ID = (
    _SELECT_FUNCTION
    + " WHERE f.archived_at IS NULL AND (f.slug = %s OR f.id = %s) ORDER BY f.slug = %s DESC"
)

FUNCTION_AT_VERSION = """
SELECT f.id, f.app_id, a.name, f.slug, v.version, v.config, md5(v.config::text),
       f.archived_at IS NOT NULL
  FROM function_versions v
  JOIN functions f ON f.id = v.function_id
  JOIN apps a ON a.id = f.app_id
 WHERE v.function_id = %s AND v.version = %s
"""

LIST_FUNCTIONS = (
    _SELECT_FUNCTION
    + """
 WHERE (f.archived_at IS NULL OR %(archived)s)
   AND (%(app_id)s::text IS NULL OR f.app_id = %(app_id)s)
 ORDER BY a.name, f.slug
"""
)

CRON_FUNCTIONS = (
    _SELECT_FUNCTION
    + """
 WHERE f.archived_at IS NULL
   AND EXISTS (SELECT 1 FROM function_triggers t WHERE t.function_id = f.id AND t.cron IS NOT NULL)
 ORDER BY f.slug
"""
)

_SELECT_APP = """
SELECT a.id, a.name, a.url, a.method, a.sdk_language, a.sdk_version, a.framework,
       a.app_version, a.checksum, a.error, a.autodiscovered <> 0, a.created_at, a.updated_at,
       (SELECT count(*) FROM functions f WHERE f.app_id = a.id AND f.archived_at IS NULL)
  FROM apps a
"""

LIST_APPS = _SELECT_APP + " ORDER BY a.name"
APP_BY_ID = _SELECT_APP + " WHERE a.id = %s"
APP_BY_NAME = _SELECT_APP + " WHERE a.name = %s"


# --- parsed-config cache ---

_CACHE_LIMIT = 4096
_parsed: dict[tuple[str, int, str], FunctionConfig] = {}


def _no_check(_: str) -> None:
    """Stored configs were validated at sync; re-parsing must not need the CEL compiler."""


def _config(function_id: str, version: int, digest: str, raw: Any) -> FunctionConfig | None:
    # The digest is part of the key because a deleted and re-synced app reuses its UUIDs and
    # restarts at version 1: (id, version) alone does not name one config forever.
    key = (function_id, version, digest)
    config = _parsed.get(key)
    if config is None:
        try:
            config = parse_function_config(raw, validate_expression=_no_check)
        except InvalidFunctionConfig as exc:
            log.warning(
                "stored config of function %s v%d is invalid: %s", function_id, version, exc
            )
            return None
        if len(_parsed) >= _CACHE_LIMIT:
            _parsed.clear()
        _parsed[key] = config
    return config


def _records(rows: Sequence[Sequence[Any]]) -> list[FunctionRecord]:
    out: list[FunctionRecord] = []
    for fid, app_id, app_name, slug, version, raw, digest, archived in rows:
        config = _config(fid, version, digest, raw)
        if config is not None:
            out.append(
                FunctionRecord(
                    id=fid, app_id=app_id, app_name=app_name, slug=slug, name=config.name,
                    version=version, config=config, archived=archived,
                )
            )  # fmt: skip
    return out


# --- reads ---


async def functions_for_event(conn: AsyncConn, event_name: str) -> list[FunctionRecord]:
    """Active functions with an event trigger matching ``event_name`` (wildcards included).

    Expressions are not evaluated here; each function appears once.
    """
    cur = await conn.execute(FUNCTIONS_FOR_EVENT, (trigger_patterns(event_name),))
    return _records(await cur.fetchall())


async def function_by_slug_or_id(conn: AsyncConn, key: str) -> FunctionRecord | None:
    cur = await conn.execute(FUNCTION_BY_SLUG_OR_ID, (key, key, key))
    records = _records(await cur.fetchall())
    return records[0] if records else None


async def function_at_version(
    conn: AsyncConn, function_id: str, version: int
) -> FunctionRecord | None:
    """The config a run started with, even if the function has since changed or vanished."""
    cur = await conn.execute(FUNCTION_AT_VERSION, (function_id, version))
    records = _records(await cur.fetchall())
    return records[0] if records else None


async def list_functions(
    conn: AsyncConn, app_id: str | None = None, *, include_archived: bool = False
) -> list[FunctionRecord]:
    cur = await conn.execute(LIST_FUNCTIONS, {"app_id": app_id, "archived": include_archived})
    return _records(await cur.fetchall())


async def cron_functions(conn: AsyncConn) -> list[FunctionRecord]:
    cur = await conn.execute(CRON_FUNCTIONS)
    return _records(await cur.fetchall())


def _app(row: Sequence[Any]) -> AppRecord:
    return AppRecord(
        id=row[0], name=row[1], url=row[2], method=row[3], sdk_language=row[4],
        sdk_version=row[5], framework=row[6], app_version=row[7], checksum=row[8],
        error=row[9], autodiscovered=row[10], created_at=row[11], updated_at=row[12],
        function_count=row[13],
    )  # fmt: skip


async def list_apps(conn: AsyncConn) -> list[AppRecord]:
    cur = await conn.execute(LIST_APPS)
    return [_app(row) for row in await cur.fetchall()]


async def app_by_id(conn: AsyncConn, app_id: str) -> AppRecord | None:
    cur = await conn.execute(APP_BY_ID, (app_id,))
    row = await cur.fetchone()
    return None if row is None else _app(row)


async def app_by_name(conn: AsyncConn, name: str) -> AppRecord | None:
    cur = await conn.execute(APP_BY_NAME, (name,))
    row = await cur.fetchone()
    return None if row is None else _app(row)


async def delete_app(conn: AsyncConn, app_id: str) -> bool:
    """Delete an app with its functions, versions and triggers (the FKs cascade)."""
    cur = await conn.execute(DELETE_APP, (app_id,))
    return cur.rowcount > 0


# --- writes ---


async def lock_app_sync(conn: AsyncConn, app_name: str) -> None:
    """Serialise syncs of one app (a poll and an SDK's own PUT can race) until commit."""
    await conn.execute(LOCK_APP_SYNC, (app_name,))


async def unchanged_app_id(conn: AsyncConn, name: str, checksum: str) -> tuple[str, bool] | None:
    """``(app id, has error)`` when ``name`` last synced exactly this body."""
    cur = await conn.execute(APP_ID_BY_CHECKSUM, (name, checksum))
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1] is not None)


async def upsert_app(conn: AsyncConn, app: AppFields, now: datetime) -> str:
    """Insert or update the app named ``app.name``, clearing its error; returns its id."""
    params = {
        "id": deterministic_uuid(app.name), "name": app.name, "url": app.url,
        "method": app.method, "sdk_language": app.sdk_language, "sdk_version": app.sdk_version,
        "framework": app.framework, "app_version": app.app_version, "checksum": app.checksum,
        "now": now,
    }  # fmt: skip
    cur = await conn.execute(UPSERT_APP, params)
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def set_app_error(conn: AsyncConn, app_id: str, error: str, now: datetime) -> None:
    await conn.execute(SET_APP_ERROR, (error, now, app_id))


async def record_sync_error(
    conn: AsyncConn, url: str, error: str, now: datetime, *, autodiscovered: bool = False
) -> None:
    """Set ``error`` on every app served at ``url``, or create a placeholder for the URL."""
    cur = await conn.execute(SET_ERROR_BY_URL, (error, now, url))
    if cur.rowcount == 0:
        params = {
            "id": deterministic_uuid(url), "url": url, "error": error,
            "auto": int(autodiscovered), "now": now,
        }  # fmt: skip
        await conn.execute(UPSERT_PLACEHOLDER, params)


async def add_placeholder(conn: AsyncConn, url: str, error: str, now: datetime) -> None:
    """A placeholder for ``url`` unless some app is already served there (``-u`` at start)."""
    params = {"id": deterministic_uuid(url), "url": url, "error": error, "now": now}
    await conn.execute(INSERT_PLACEHOLDER_IF_UNKNOWN, params)


async def delete_placeholders(conn: AsyncConn, url: str, keep_name: str = "") -> None:
    await conn.execute(DELETE_PLACEHOLDERS, (url, keep_name))


async def mark_autodiscovered(conn: AsyncConn, url: str) -> None:
    await conn.execute(MARK_AUTODISCOVERED, (url,))


async def sync_functions(
    conn: AsyncConn, app_id: str, configs: Sequence[FunctionConfig], now: datetime
) -> None:
    """Make ``configs`` the app's active functions (run inside the sync's transaction)."""
    cur = await conn.execute(FUNCTIONS_FOR_SYNC, (app_id, [c.slug for c in configs]))
    existing = {row[1]: row for row in await cur.fetchall()}
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    versions: list[tuple[Any, ...]] = []
    retrigger: list[tuple[str, FunctionConfig]] = []
    for config in configs:
        raw = Jsonb(dict(config.raw))
        row = existing.pop(config.slug, None)
        if row is None:
            fid = deterministic_uuid(config.slug)
            inserts.append((fid, app_id, config.slug, config.name, 1, raw, now, now))
            versions.append((fid, 1, raw, now))
        else:
            fid, _, version, stored, archived, owner = row
            changed = stored != config.raw
            if changed:
                version += 1
                versions.append((fid, version, raw, now))
            if not (changed or archived or owner != app_id):
                continue
            updates.append((app_id, config.name, version, raw, now, fid))
        retrigger.append((fid, config))
    vanished = [row[0] for row in existing.values() if not row[4]]
    async with conn.cursor() as cur:
        for statement, batch in ((INSERT_FUNCTION, inserts), (UPDATE_FUNCTION, updates)):
            if batch:
                await cur.executemany(statement, batch)
        if versions:
            await cur.executemany(INSERT_FUNCTION_VERSION, versions)
    await conn.execute(DELETE_TRIGGERS, ([fid for fid, _ in retrigger] + vanished,))
    await _insert_triggers(conn, retrigger)
    if vanished:
        await conn.execute(ARCHIVE_FUNCTIONS, (now, now, vanished))


async def _insert_triggers(
    conn: AsyncConn, functions: Sequence[tuple[str, FunctionConfig]]
) -> None:
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for fid, config in functions:
        for position, trigger in enumerate(config.triggers):
            values = (
                (fid, position, trigger.event, trigger.expression, None, None)
                if isinstance(trigger, EventTrigger)
                else (fid, position, None, None, trigger.cron, trigger.jitter)
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    if columns[0]:
        await conn.execute(INSERT_TRIGGERS, columns)
