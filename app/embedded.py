"""The embedded PostgreSQL of ``stepwell dev``: the ``pgserver`` package's bundled server.

The data directory persists across restarts, so runs survive them.  One process at a time owns
the server of a data directory: it holds an exclusive ``flock`` on ``<data-dir>/pgdata.lock``
for its whole life, starts the server (or adopts one a killed owner left running) and stops it
when it is done.  The kernel releases the lock however its holder dies, so a server running
while nobody holds the lock is an orphan, and the next owner may stop it.  A one-shot command
(``replay``, ``migrate``, ``projections rebuild``) may instead join the server of a running
owner as a guest, which never stops it.  pgserver's own reference count (a list of pids in the
data directory) is bypassed: a killed process never removes its pid from it, after which nobody
would stop the server.

Exception tree::

    EmbeddedPostgresError        the server could not be started or reached
    └── DataDirectoryInUse       another process owns the data directory
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from app.store.urls import libpq_url

DATABASE = "stepwell"
LOCK_FILE = "pgdata.lock"
# pg_ctl's own wait for a fast shutdown; an immediate one follows if that is not enough.
STOP_TIMEOUT_SECONDS = 60
log = logging.getLogger("stepwell")
logging.getLogger("pgserver").setLevel(logging.WARNING)


class EmbeddedPostgresError(RuntimeError):
    pass


class DataDirectoryInUse(EmbeddedPostgresError):
    def __init__(self, data_dir: Path, holder: int | None) -> None:
        who = f"another stepwell process (pid {holder})" if holder else "another stepwell process"
        super().__init__(
            f"{who} is running the embedded PostgreSQL of {data_dir}; "
            "stop it first or pass another --data-dir"
        )
        self.data_dir = data_dir
        self.holder = holder


class EmbeddedPostgres:
    """The server of one data directory, as this process uses it.

    An owner holds the lock (it started or adopted the server, and ``stop`` stops it); a guest
    holds nothing and its ``stop`` does nothing.  ``pgdata`` and ``system_user`` (the OS user
    pgserver runs the server as, when we are root) let callers run ``pg_ctl`` on it.
    """

    def __init__(self, pgdata: Path, *, lock_fd: int | None, server: Any = None) -> None:
        self.pgdata = pgdata
        self.system_user = _system_user()
        self._lock_fd = lock_fd
        self._server = server

    def stop(self) -> None:
        """Stop the server if this process owns it, then release the lock.  Idempotent."""
        if self._lock_fd is None:
            return
        try:
            _stop_postmaster(self.pgdata, self.system_user)
            if self._server is not None:
                self._server.cleanup()  # drops pgserver's per-process cache of the handle
                self._server = None
        finally:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def cleanup(self) -> None:
        """pgserver's name for ``stop``."""
        self.stop()


def start_embedded(data_dir: Path, *, join_running: bool = False) -> tuple[str, EmbeddedPostgres]:
    """Start the server in ``data_dir/pgdata`` (or adopt an orphan); return its URL and handle.

    Call ``stop()`` on the handle when done; an ``atexit`` hook does it otherwise (not on
    SIGTERM's default action, which kills the process: the CLI turns SIGTERM into an exception).
    With ``join_running``, a server owned by another process is used (never stopped) instead of
    refused.
    """
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    lock_path = pgdata.parent / LOCK_FILE
    lock_fd = _try_lock(lock_path)
    if lock_fd is None:
        holder = _lock_holder(lock_path)
        if not join_running:
            raise DataDirectoryInUse(data_dir, holder)
        return _join(data_dir, pgdata, holder)
    try:
        server = _start(pgdata)
    except BaseException:
        # A failed start (or, in a process that lets signals interrupt it, a cut-short one) must
        # not leave a postmaster running without an owner.
        try:
            _stop_postmaster(pgdata, _system_user())
        finally:
            os.close(lock_fd)
        raise
    handle = EmbeddedPostgres(pgdata, lock_fd=lock_fd, server=server)
    atexit.register(handle.stop)
    return str(server.get_uri(DATABASE)), handle


def _start(pgdata: Path) -> Any:
    import pgserver  # imported lazily: only dev mode without a URL needs it

    orphan = running_postmaster(pgdata)
    if orphan is not None:
        log.warning(
            "reusing an embedded PostgreSQL left running by an earlier process (pid %d); "
            "it will be stopped when this process exits",
            orphan,
        )
    # We hold the lock, so every pid in pgserver's list is stale; left there, they would keep
    # its handle from ever being released (and it from being started again in this process).
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # stopping is ours
        _ensure_database(server.get_uri("postgres"))
    except Exception as exc:  # pgserver raises bare exceptions with the initdb/pg_ctl output
        message = f"could not start embedded PostgreSQL in {pgdata}: {exc}"
        raise EmbeddedPostgresError(message) from exc
    return server


def _join(data_dir: Path, pgdata: Path, holder: int | None) -> tuple[str, EmbeddedPostgres]:
    from pgserver.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
        url = str(info.get_uri(database=DATABASE)) if info and info.status == "ready" else None
    except Exception:  # postmaster.pid is written line by line while the server starts
        url = None
    if url is None or running_postmaster(pgdata) is None:
        raise DataDirectoryInUse(data_dir, holder)
    return url, EmbeddedPostgres(pgdata, lock_fd=None)


def running_postmaster(pgdata: Path) -> int | None:
    """The pid of the postmaster ``postmaster.pid`` names, if that process is alive."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, and another user's
    return pid


def _stop_postmaster(pgdata: Path, system_user: str | None) -> None:
    """``pg_ctl stop`` on the data directory: whichever postmaster runs there, ours or not."""
    if running_postmaster(pgdata) is None:
        return
    for mode in ("fast", "immediate"):  # fast: roll back, checkpoint; immediate: crash-recover
        if _pg_ctl(pgdata, system_user, "-m", mode, "stop"):
            return
    log.warning("could not stop the embedded PostgreSQL in %s; see %s", pgdata, pgdata / "log")


def _pg_ctl(pgdata: Path, system_user: str | None, *args: str) -> bool:
    from pgserver._commands import POSTGRES_BIN_PATH  # the bundled binaries

    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w"]
    command += ["-t", str(STOP_TIMEOUT_SECONDS), *args]
    try:
        # Capturing is safe for ``stop`` (for ``start`` the postmaster would inherit the pipes).
        done = subprocess.run(
            command,
            user=system_user,
            capture_output=True,
            timeout=STOP_TIMEOUT_SECONDS + 5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 or running_postmaster(pgdata) is None


def _system_user() -> str | None:
    """pgserver runs the server as user ``pgserver`` when we are root (initdb refuses root)."""
    return "pgserver" if os.geteuid() == 0 else None


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path``, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited: O_CLOEXEC by default
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for the refusal message of the next one
    return fd


def _lock_holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None  # it has the lock but has not written its pid yet


def _ensure_database(admin_url: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
