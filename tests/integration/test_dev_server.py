"""``stepwell dev`` with no database URL: an embedded PostgreSQL that survives restarts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import psycopg

from tests.processes import ROOT, clean_env, free_port, spawn, stepwell_args


def _database_url(output: str) -> str:
    match = re.search(r"\(database: (postgresql://\S+)\)", output)
    assert match, output
    return match.group(1)


def test_dev_without_a_database_url_serves_health_from_an_embedded_postgres(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    args = stepwell_args(
        "dev", "--data-dir", str(data_dir), "--port", str(port), "--no-discovery", "--no-poll"
    )
    with spawn(args, port=port, log=tmp_path / "first.log") as server:
        response = httpx.get(f"{server.url}/health")
        assert response.json() == {"status": 200, "message": "OK"}
        assert response.headers["x-inngest-server-kind"] == "dev"
        out = server.output()
        assert f"listening on http://127.0.0.1:{port}" in out
        url = _database_url(out)
        assert str(data_dir.resolve()) in url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                'INSERT INTO events (internal_id, id, name, data, "user", ts, '
                "received_at) VALUES ('01J0000000000000000000000A', 'x', 'probe', "
                "'{}', '{}', 1, now())"
            )
    # A second `stepwell dev` on the same data directory reuses the data.
    with spawn(args, port=port, log=tmp_path / "second.log") as server:
        url = _database_url(server.output())
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT name FROM events").fetchone()
        assert row == ("probe",)


def _dev(data_dir: Path, port: int) -> list[str]:
    return stepwell_args(
        "dev", "--data-dir", str(data_dir), "--port", str(port), "--no-discovery", "--no-poll"
    )


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, env=clean_env(), cwd=ROOT, check=False
    )


def test_a_second_dev_on_the_same_data_directory_is_refused_and_the_first_carries_on(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    with spawn(_dev(data_dir, port), port=port, log=tmp_path / "first.log") as first:
        second = _run(_dev(data_dir, free_port()))
        assert second.returncode != 0
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert lines == [
            f"stepwell: another stepwell process (pid {first.popen.pid}) is running the "
            f"embedded PostgreSQL of {data_dir}; stop it first or pass another --data-dir"
        ], second.stderr
        assert second.stdout == ""
        # The first still serves, from the same database as before.
        ids = httpx.post(f"{first.url}/e/key", json={"name": "after/refusal"}).json()["ids"]
        event = httpx.get(f"{first.url}/v1/events/{ids[0]}")
        assert event.status_code == 200 and event.json()["data"]["name"] == "after/refusal"
        # One-shot commands use the running server instead of being refused.
        replay = _run(
            stepwell_args("replay", "01J0000000000000000000000R", "--data-dir", str(data_dir))
        )
        assert "another stepwell process" not in replay.stderr
        assert "not found" in replay.stderr, replay.stderr
        assert first.popen.poll() is None and "Traceback" not in first.output()
