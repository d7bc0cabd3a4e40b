"""What each ``stepwell`` command does once its settings are known.

Resolves the database (a given URL, or the embedded PostgreSQL in ``dev``), migrates it,
then serves HTTP (with in-process workers) or runs workers only; or replays one run's history
(read-only, no migration) or rebuilds the projections.  An embedded server this process owns
is stopped on the way out, however the command ends: SIGTERM is turned into an exception so
that it unwinds like Ctrl-C does, after uvicorn or ``run_workers`` drained the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from app.embedded import EmbeddedPostgresError, start_embedded
from app.settings import Settings
from app.store.migrate import DatabaseUnavailable, check_reachable, upgrade

if TYPE_CHECKING:
    from projections.rebuild import RebuildReport

log = logging.getLogger("stepwell")


class CliError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""


def run(command: str, settings: Settings) -> None:
    if command == "start":
        _require_keys(settings)
    with database(settings, guest=command == "migrate") as url:
        try:
            upgrade(url)
        except DatabaseUnavailable as exc:
            raise CliError(str(exc)) from None
        if command == "migrate":
            print(f"stepwell: database {redact(url)} is at the latest schema revision")
        elif command == "worker":
            run_loop(run_workers(replace(settings, mode="worker"), url))
        else:
            serve(settings, url)


def _require_keys(settings: Settings) -> None:
    from app.drivers.signing import is_valid_signing_key

    if not settings.signing_key:
        raise CliError(
            "`stepwell start` needs a signing key (--signing-key or INNGEST_SIGNING_KEY)"
        )
    if not is_valid_signing_key(settings.signing_key):
        raise CliError(
            "the signing key must be an even-length hex string (optionally prefixed signkey-<env>-)"
        )
    if not settings.event_keys:
        raise CliError(
            "`stepwell start` needs at least one event key (--event-key or INNGEST_EVENT_KEY)"
        )


@contextlib.contextmanager
def database(settings: Settings, *, guest: bool = False) -> Iterator[str]:
    """The database URL for the command's lifetime: the given one, or the embedded server's.

    This process owns the embedded server of its data directory (a second one is refused)
    and stops it on the way out; a ``guest`` (a one-shot command) uses the server of a
    running owner instead of being refused, and leaves it running.
    """
    if settings.database_url:
        yield settings.database_url
        return
    with _sigterm_unwinds():
        with _signals_held() as received:
            try:
                url, server = start_embedded(settings.data_dir, join_running=guest)
            except EmbeddedPostgresError as exc:
                raise CliError(str(exc)) from None
        try:
            if received:  # now that the server is up, stop it as if the signal came just now
                signal.raise_signal(received[0])
            yield url
        finally:
            with _signals_held():  # what comes during the stop is dropped: we exit anyway
                server.stop()


class _Terminated(SystemExit):
    """SIGTERM as an exception: its default action kills the process, skipping every cleanup."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)  # the shell's code, should it escape


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal.signal needs it


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises ``_Terminated``; once everything unwound, the process dies of SIGTERM.

    uvicorn handles SIGTERM itself while it serves, then re-raises it with the handler it
    found: this one.  Dying of the signal (not exiting 143) is what supervisors expect: systemd
    counts it as a clean stop.
    """
    if not _on_main_thread():
        yield
        return

    def unwind(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    except _Terminated:
        _die_of(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _die_of(sig: signal.Signals) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(sig, signal.SIG_DFL)
    signal.raise_signal(sig)
    raise SystemExit(128 + sig)  # only if the signal is blocked


@contextlib.contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM back while the embedded server starts or stops; yield those held.

    An initdb cut short leaves a data directory no later start can use, and a stop cut short
    leaves an orphan.  A Python-level handler, not SIG_IGN or a blocked mask, so that children
    (initdb, pg_ctl, the postmaster) get the default actions back when they exec.
    """
    received: list[int] = []
    if not _on_main_thread():
        yield received
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"


def serve(settings: Settings, url: str) -> None:
    import uvicorn

    from app.main import create_app

    app = create_app(settings, url)
    kind = "self-hosted" if settings.is_self_hosted else "dev"
    print(
        f"stepwell {kind} server listening on http://{settings.host}:{settings.port} "
        f"(database: {redact(url)})",
        flush=True,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        access_log=False,
    )
    uvicorn.Server(config).run()


async def run_workers(settings: Settings, url: str) -> None:
    from app.clock import SystemClock
    from app.main import Services

    services = Services(settings=settings, database_url=url, clock=SystemClock())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, services.stop.set)
    await services.start()
    print(f"stepwell worker running (database: {redact(url)})", file=sys.stderr, flush=True)
    try:
        await services.stop.wait()
    finally:
        await services.close()


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop where it is installed (as uvicorn does for the server)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def replay(settings: Settings, run_id: str, state_after: int | None, *, as_json: bool) -> None:
    """Print a run's timeline (or its state after transition ``state_after``)."""
    import psycopg

    from app.replay import ReplayError

    with database(settings, guest=True) as url:
        try:
            check_reachable(url)
            print(asyncio.run(_replay(url, run_id, state_after, as_json)))
        except (DatabaseUnavailable, ReplayError) as exc:
            raise CliError(str(exc)) from None
        except psycopg.Error as exc:
            raise CliError(f"cannot read the run history: {_first_line(exc)}") from None


async def _replay(url: str, run_id: str, state_after: int | None, as_json: bool) -> str:
    from app.replay import replay as render
    from app.store.db import connect

    conn = await connect(url)
    try:
        return await render(conn, run_id, state_after_n=state_after, as_json=as_json)
    finally:
        await conn.close()


def rebuild_projections(settings: Settings) -> None:
    """Migrate, then recompute every view from history, showing progress on stderr."""
    with database(settings, guest=True) as url:  # a rebuild runs alongside a live server
        try:
            upgrade(url)
        except DatabaseUnavailable as exc:
            raise CliError(str(exc)) from None
        report = asyncio.run(_rebuild(url))
    print(
        f"stepwell: rebuilt the runs view ({report.runs} runs) and function stats "
        f"({report.stats_rows} rows) from {report.history_rows} history rows "
        f"in {report.seconds:.1f}s"
    )


async def _rebuild(url: str) -> RebuildReport:
    from rich.console import Console
    from rich.progress import Progress

    from app.store.db import connect
    from projections.rebuild import rebuild

    console = Console(stderr=True)
    conn = await connect(url)
    try:
        if not console.is_terminal:
            return await rebuild(conn, progress=_plain_progress())
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("rebuilding projections", total=None)
            return await rebuild(
                conn, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    finally:
        await conn.close()


def _plain_progress() -> Callable[[int, int], None]:
    """A progress callback for logs: one line per tenth of the runs."""
    shown = [-1]

    def report(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != shown[0]:
            shown[0] = tenth
            print(f"stepwell: rebuilt {done}/{total} runs", file=sys.stderr, flush=True)

    return report


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
