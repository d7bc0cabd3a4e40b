"""``stepwell dev`` owns its embedded PostgreSQL: it stops it on SIGTERM and Ctrl-C alike, after
the workers drained and with every accepted event kept, and adopts (then stops) one that a
SIGKILLed predecessor left running.  Real processes: the server, its postmaster, the signals.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.processes import Proc, free_port, spawn, stepwell_args

ORPHAN_NOTICE = "reusing an embedded PostgreSQL left running by an earlier process"
EVENT = "lifecycle/probe"


def _dev(data_dir: Path, port: int) -> list[str]:
    return stepwell_args(
        "dev", "--data-dir", str(data_dir), "--port", str(port), "--no-discovery", "--no-poll"
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The data directory; a failing test's leftover postmaster is stopped, not leaked."""
    path = tmp_path / "data"
    yield path
    for proc in _server_processes(path):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            proc.wait(30)


def _server_processes(data_dir: Path) -> list[psutil.Process]:
    """The live postmaster of ``data_dir`` (named on its command line) and its children."""
    pgdata = str((data_dir / "pgdata").resolve())
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and pgdata in (proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                found += [proc, *proc.children(recursive=True)]
    return _alive(found)


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running: a zombie (reaped late where PID 1 does not reap) has exited."""
    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


class _Sender(threading.Thread):
    """Posts one event after another until halted; keeps the ids of those answered 200."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.accepted: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            n = 0
            while not self.halt.wait(0.02):
                n += 1
                with contextlib.suppress(httpx.HTTPError):  # the server is going away
                    response = client.post("/e/key", json={"name": EVENT, "data": {"n": n}})
                    if response.status_code == 200:
                        self.accepted += response.json()["ids"]


@contextlib.contextmanager
def _sending(server: Proc) -> Iterator[_Sender]:
    sender = _Sender(server.url)
    sender.start()
    try:
        yield sender
    finally:
        sender.halt.set()
        sender.join(30)


def _stored(server: Proc) -> set[str]:
    """The internal ids of every probe event, through ``GET /v1/events`` page by page."""
    ids: set[str] = set()
    params: dict[str, str | int] = {"name": EVENT, "limit": 100}
    while True:
        response = httpx.get(f"{server.url}/v1/events", params=params, timeout=10)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        if not page:
            return ids
        ids.update(event["internal_id"] for event in page)
        params["cursor"] = page[-1]["internal_id"]


def _stop_while_sending(server: Proc, sig: signal.Signals) -> list[str]:
    """Signal the server in the middle of a stream of events; return those it accepted."""
    with _sending(server) as sender:
        while len(sender.accepted) < 10:
            assert sender.is_alive() and server.popen.poll() is None, server.output()
            sender.halt.wait(0.05)
        server.stop(sig, timeout=60)
    assert sender.accepted, server.output()
    return sender.accepted


@pytest.mark.timeout(300)
def test_sigterm_and_then_ctrl_c_stop_the_embedded_postgres_and_lose_no_accepted_event(
    data_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    accepted: list[str] = []
    # SIGTERM dies of the signal once clean (what supervisors expect); Ctrl-C exits 130.
    for sig, exit_code in ((signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)):
        with spawn(_dev(data_dir, port), port=port, log=tmp_path / f"{sig.name}.log") as server:
            assert _stored(server) == set(accepted)  # all accepted before the previous signal
            postgres = _server_processes(data_dir)
            assert postgres, server.output()
            accepted += _stop_while_sending(server, sig)
            assert server.popen.returncode == exit_code, server.output()
            assert ORPHAN_NOTICE not in server.output()
        assert _alive(postgres) == [], f"{sig.name} left {postgres}"
        assert _server_processes(data_dir) == []
    with spawn(_dev(data_dir, port), port=port, log=tmp_path / "last.log") as server:
        assert _stored(server) == set(accepted)
        assert ORPHAN_NOTICE not in server.output()


@pytest.mark.timeout(300)
def test_an_orphan_left_by_a_sigkill_is_adopted_by_the_next_start_and_stopped_at_its_exit(
    data_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    with spawn(_dev(data_dir, port), port=port, log=tmp_path / "killed.log") as first:
        accepted = _stop_while_sending(first, signal.SIGKILL)
    orphan = _server_processes(data_dir)
    assert orphan, "a SIGKILLed server cannot stop its PostgreSQL: the orphan this test is about"
    with spawn(_dev(data_dir, port), port=port, log=tmp_path / "adopter.log") as second:
        assert ORPHAN_NOTICE in second.output()
        assert set(accepted) <= _stored(second)
        second.stop(signal.SIGTERM, timeout=60)
        assert second.popen.returncode == -signal.SIGTERM, second.output()
    assert _alive(orphan) == [], "the adopted orphan outlived its adopter"
    assert _server_processes(data_dir) == []
