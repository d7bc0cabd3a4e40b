"""The ``stepwell`` command as a user runs it: help, migrate, refusals, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.store.migrate import current_revision, head_revision


def stepwell(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPWELL_", "INNGEST_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


@pytest.mark.parametrize("command", ["dev", "start", "worker", "migrate"])
def test_every_command_explains_itself_in_help(command: str) -> None:
    result = stepwell(command, "--help")
    assert result.returncode == 0
    assert "usage: stepwell " + command in result.stdout
    assert "--database-url" in result.stdout


def test_migrate_on_a_migrated_database_is_a_no_op(db_url: str) -> None:
    first = stepwell("migrate", "--database-url", db_url)
    second = stepwell("migrate", env={"STEPWELL_DATABASE_URL": db_url})
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "latest schema revision" in second.stdout
    assert current_revision(db_url) == head_revision(db_url)


@pytest.mark.parametrize("url", ["postgresql://postgres@127.0.0.1:1/nowhere", "not a url at all"])
def test_migrate_with_a_bad_url_fails_with_one_line_and_no_traceback(url: str) -> None:
    result = stepwell("migrate", "--database-url", url)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stepwell: cannot connect to the database")
    assert "Traceback" not in result.stderr


def test_start_refuses_to_run_without_keys(db_url: str) -> None:
    no_keys = stepwell("start", "--database-url", db_url)
    assert no_keys.returncode != 0 and "signing key" in no_keys.stderr
    no_event_key = stepwell(
        "start", "--database-url", db_url, env={"INNGEST_SIGNING_KEY": "signkey-test-abcd"}
    )
    assert no_event_key.returncode != 0 and "event key" in no_event_key.stderr
    bad_key = stepwell(
        "start", "--database-url", db_url, "--signing-key", "xyz", "--event-key", "k"
    )
    assert bad_key.returncode != 0 and "hex" in bad_key.stderr
    assert "Traceback" not in no_keys.stderr + no_event_key.stderr + bad_key.stderr
