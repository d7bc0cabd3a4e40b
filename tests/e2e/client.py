"""A small client for e2e tests: send events and read runs the way a user would (HTTP API)."""

from __future__ import annotations

import time
from typing import Any

import httpx

FINAL = {"Completed", "Failed", "Cancelled", "Skipped"}


class Stepwell:
    def __init__(
        self,
        base_url: str,
        event_key: str = "test-key",
        signing_key_hash: str | None = None,
        app: str = "e2e-py",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app
        self.event_key = event_key
        headers = {"Authorization": f"Bearer {signing_key_hash}"} if signing_key_hash else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def close(self) -> None:
        self.http.close()

    def send(self, name: str, data: dict[str, Any] | None = None, **fields: Any) -> str:
        response = self.http.post(
            f"/e/{self.event_key}", json=[{"name": name, "data": data or {}, **fields}]
        )
        assert response.status_code == 200, response.text
        [event_id] = response.json()["ids"]
        return str(event_id)

    def functions(self, app: str) -> dict[str, str]:
        """Function slug -> id, from REST v1 (works in dev and self-hosted mode)."""
        response = self.http.get(f"/v1/apps/{app}/functions")
        response.raise_for_status()
        return {f["id"]: f["internal_id"] for f in response.json()}

    def runs_for_event(self, event_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/v1/events/{event_id}/runs")
        response.raise_for_status()
        return list(response.json()["data"])

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/runs/{run_id}")
        response.raise_for_status()
        return dict(response.json()["data"])

    def wait_for_runs(
        self, event_id: str, count: int = 1, timeout: float = 30
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.runs_for_event(event_id)
            if len(runs) >= count:
                return runs
            time.sleep(0.05)
        raise AssertionError(f"event {event_id}: expected {count} runs, got {runs}")

    def wait_run(
        self, run_id: str, timeout: float = 30, statuses: set[str] = FINAL
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not reach {statuses}: {run}")

    def run_of(self, event_id: str, slug: str, timeout: float = 30) -> dict[str, Any]:
        """The finished run of function ``slug`` triggered by ``event_id``."""
        fn_id = self.functions(self.app)[slug]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mine = [r for r in self.runs_for_event(event_id) if r["function_id"] == fn_id]
            if mine:
                return self.wait_run(mine[0]["run_id"], max(deadline - time.monotonic(), 1))
            time.sleep(0.05)
        raise AssertionError(f"no run of {slug} for event {event_id}")

    def sync(self, app_url: str) -> None:
        response = httpx.put(app_url, timeout=30)
        assert response.status_code == 200, response.text
