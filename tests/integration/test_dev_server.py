"""``stepwell dev`` with no database URL: an embedded PostgreSQL that survives restarts."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import psycopg

from tests.processes import free_port, spawn, stepwell_args


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
