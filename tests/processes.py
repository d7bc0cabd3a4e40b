"""Helpers to run real processes in tests: Stepwell servers and SDK apps on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPWELL_", "INNGEST_"))}
    env.update(extra)
    return env


class Proc:
    def __init__(self, popen: subprocess.Popen[str], url: str, log: Path) -> None:
        self.popen = popen
        self.url = url
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.output()}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url}{path} not healthy after {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def wait_output(self, text: str, timeout: float = 60) -> None:
        """For processes without an HTTP port (workers): wait for a line in their output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.output()}")
            if text in self.output():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{text!r} not printed after {timeout}s:\n{self.output()}")


@contextmanager
def spawn(
    args: Sequence[str],
    *,
    port: int = 0,
    log: Path,
    env: dict[str, str] | None = None,
    health: str = "/health",
    ready_text: str | None = None,
    cwd: Path | None = None,
) -> Iterator[Proc]:
    """Start a process; ready once ``health`` answers on ``port`` (or ``ready_text`` shows)."""
    handle = log.open("a")
    popen = subprocess.Popen(
        list(args),
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or clean_env(),
        cwd=cwd or ROOT,
    )
    proc = Proc(popen, f"http://127.0.0.1:{port}", log)
    try:
        if ready_text is not None:
            proc.wait_output(ready_text)
        else:
            proc.wait_healthy(health)
        yield proc
    finally:
        proc.stop()
        handle.close()


def stepwell_args(command: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "app", command, *extra]
