"""Settings: one frozen object, read once from flags and ``STEPWELL_*`` environment variables.

Precedence: command-line flag, then ``STEPWELL_<NAME>``, then (for keys) the Inngest names
``INNGEST_SIGNING_KEY``, ``INNGEST_SIGNING_KEY_FALLBACK``, ``INNGEST_EVENT_KEY``, then the
default.  Nothing else in Stepwell reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Mode = Literal["dev", "start", "worker"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    mode: Mode = "dev"
    """``dev`` is open (no keys, like ``inngest dev``); ``start`` is self-hosted and
    authenticated end to end; ``worker`` runs only the queue workers."""

    database_url: str | None = None
    """PostgreSQL URL.  None in ``dev`` starts an embedded PostgreSQL in ``data_dir``."""

    data_dir: Path = Path(".stepwell")
    """Where the embedded PostgreSQL keeps its data (reused across restarts)."""

    host: str = "127.0.0.1"
    """Interface the HTTP server binds."""

    port: int = 8288
    """HTTP port (Inngest's default)."""

    signing_key: str | None = None
    """Signs requests to SDKs and authenticates SDK calls to us (self-hosted)."""

    signing_key_fallback: str | None = None
    """Accepted as well during a key rotation."""

    event_keys: tuple[str, ...] = ()
    """Keys accepted by ``POST /e/{key}`` in self-hosted mode."""

    sdk_urls: tuple[str, ...] = ()
    """SDK app URLs to sync at start (``-u``, repeatable)."""

    discovery: bool = True
    """Probe the usual local ports and paths for SDK apps until one is found."""

    poll: bool = True
    """Re-sync known apps every ``poll_interval`` seconds."""

    poll_interval: float = 5.0
    """Seconds between app polls."""

    retry_interval: float | None = None
    """Fixed retry delay in seconds instead of Inngest's backoff table (for tests)."""

    workers: int = 32
    """How many queue items one process executes concurrently."""

    queue_poll_interval: float = 0.1
    """Seconds between queue polls when no NOTIFY arrives (the fallback wake-up)."""

    lease_seconds: float = 30.0
    """Queue lease length; a worker extends it while an SDK call is in flight."""

    call_timeout: float = 7200.0
    """Seconds to wait for an SDK's reply before the attempt fails (Inngest: 2 h)."""

    engine_connections: int | None = None
    """Connections for queue claims and run transitions (default: a quarter of ``workers``
    plus two, at least 8)."""

    ingest_connections: int = 6
    """Connections for client writes: events, invokes, sync, cancellations, mutations."""

    read_connections: int = 4
    """Connections for client reads: GraphQL queries, REST reads, the dev UI."""

    pool_wait_seconds: float = 5.0
    """How long a request waits for a connection of its pool before it is answered 503."""

    read_timeout_seconds: float = 15.0
    """Statement timeout of one read query (GraphQL, REST, UI)."""

    run_workers: bool = True
    """Run queue workers inside the HTTP process (``dev``/``start``); ``worker`` only runs them."""

    @property
    def is_self_hosted(self) -> bool:
        return self.mode == "start"

    @property
    def response_keys(self) -> tuple[str, ...]:
        """Keys SDK replies must be signed with: self-hosted servers, and workers given a
        signing key (they serve a self-hosted deployment); none in dev mode, where SDKs do
        not sign."""
        return self.signing_keys if self.mode != "dev" else ()

    @property
    def signing_keys(self) -> tuple[str, ...]:
        return tuple(k for k in (self.signing_key, self.signing_key_fallback) if k)


def env_value(name: str, env: Mapping[str, str], *aliases: str) -> str | None:
    """``STEPWELL_<name>``, else the first alias that is set (Inngest's names)."""
    for key in (f"STEPWELL_{name}", *aliases):
        value = env.get(key)
        if value:
            return value
    return None


def from_environ() -> Mapping[str, str]:
    return dict(os.environ)
