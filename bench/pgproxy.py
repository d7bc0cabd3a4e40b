"""A counting TCP proxy for the PostgreSQL wire protocol (no pg_stat_statements needed).

Stepwell is pointed at this proxy instead of Postgres; every byte is forwarded unchanged while
the messages are tallied per direction:

* **round trips** = ``ReadyForQuery`` messages from the server (exactly one per simple
  ``Query`` and one per extended-protocol ``Sync``, i.e. one per client wait);
* **statements** = ``CommandComplete`` tags, by verb (SELECT/INSERT/UPDATE/DELETE/BEGIN/COMMIT…);
* **commits** = ``COMMIT`` tags, plus write statements (INSERT/UPDATE/DELETE, or a SELECT that
  calls pg_notify) run outside a transaction block (autocommit: each is its own commit);
  ``read_only_autocommit`` counts the other statements run outside a block.

The transaction state comes from the status byte of ``ReadyForQuery`` (``I`` idle, ``T`` in a
block, ``E`` failed block).  Connect with ``sslmode=disable gssencmode=disable`` so the stream
stays plaintext.  ``python -m bench.pgproxy --port P --stats-port S --target 127.0.0.1:5432``;
connecting to the stats port returns the counters as JSON (sending ``reset`` zeroes them
after the read).  Binds
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import struct
import time
from collections import Counter, deque
from typing import Any

SSL_CODES = {80877103, 80877104}  # SSLRequest, GSSENCRequest
WRITE_VERBS = {"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"}


class Tally:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.round_trips = 0
        self.tags: Counter[str] = Counter()
        self.commits = 0
        self.rollbacks = 0
        self.autocommit_writes = 0
        self.read_only_autocommit = 0
        self.client_msgs: Counter[str] = Counter()
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.notifications = 0
        #: statement text (normalised) -> [round trips, total ms from Sync/Query to ReadyForQuery]
        self.by_statement: dict[str, list[float]] = {}

    def as_json(self) -> dict[str, Any]:
        return {
            "round_trips": self.round_trips,
            "commits": self.commits + self.autocommit_writes,
            "explicit_commits": self.commits,
            "autocommit_writes": self.autocommit_writes,
            "read_only_autocommit": self.read_only_autocommit,
            "rollbacks": self.rollbacks,
            "statements": sum(v for k, v in self.tags.items() if k not in ("BEGIN", "COMMIT")),
            "tags": dict(self.tags),
            "client_msgs": dict(self.client_msgs),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "connections": self.connections,
            "notifications": self.notifications,
            "by_statement": {
                k: {"calls": int(v[0]), "total_ms": round(v[1], 3)}
                for k, v in sorted(self.by_statement.items(), key=lambda kv: -kv[1][0])
            },
        }


TALLY = Tally()


class Conn:
    """Per-connection parsing state."""

    def __init__(self) -> None:
        self.in_block = False
        self.pending_notify: dict[str, bool] = {}  # prepared statement name -> calls pg_notify
        self.next_notify = False  # the statement being executed calls pg_notify
        self.refusals_expected = 0  # one-byte answers owed to SSLRequest/GSSENCRequest
        self.statements: dict[str, str] = {}  # prepared statement name -> normalised text
        self.current = ""  # text of the statement being bound/executed
        self.in_flight: deque[tuple[str, float]] = deque()  # (text, sent at) per Sync/Query


def normalise(query: bytes) -> str:
    text = re.sub(r"\s+", " ", query.decode(errors="replace")).strip()
    return text[:160]


async def pump_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, c: Conn) -> None:
    """Client → server: the untyped startup message(s), then typed messages."""
    buf = b""
    started = False
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        writer.write(chunk)
        TALLY.bytes_up += len(chunk)
        buf += chunk
        while True:
            if not started:
                if len(buf) < 8:
                    break
                (length,) = struct.unpack("!I", buf[:4])
                if len(buf) < length:
                    break
                (code,) = struct.unpack("!I", buf[4:8])
                buf = buf[length:]
                if code in SSL_CODES:
                    c.refusals_expected += 1
                else:
                    started = True
                continue
            if len(buf) < 5:
                break
            kind = chr(buf[0])
            (length,) = struct.unpack("!I", buf[1:5])
            if len(buf) < 1 + length:
                break
            body = buf[5 : 1 + length]
            buf = buf[1 + length :]
            TALLY.client_msgs[kind] += 1
            if kind == "P":  # Parse: name\0 query\0 …
                name, _, rest = body.partition(b"\0")
                query = rest.partition(b"\0")[0]
                c.pending_notify[name.decode()] = b"pg_notify" in query
                c.next_notify = b"pg_notify" in query
                c.statements[name.decode()] = c.current = normalise(query)
            elif kind == "B":  # Bind: portal\0 statement\0 …
                stmt = body.split(b"\0", 2)[1].decode()
                c.next_notify = c.pending_notify.get(stmt, c.next_notify)
                c.current = c.statements.get(stmt, c.current)
            elif kind == "Q":
                c.next_notify = b"pg_notify" in body
                c.current = normalise(body.rstrip(b"\0"))
                c.in_flight.append((c.current, time.perf_counter()))
            elif kind == "S":
                c.in_flight.append((c.current, time.perf_counter()))
        await writer.drain()


async def pump_down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, c: Conn) -> None:
    """Server → client: typed messages (after an optional one-byte SSL/GSS refusal)."""
    buf = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        writer.write(chunk)
        TALLY.bytes_down += len(chunk)
        buf += chunk
        while True:
            if c.refusals_expected and buf:
                # The one-byte answer to SSLRequest/GSSENCRequest has no length.  ("S" would
                # start TLS, which this proxy cannot read: connect with sslmode=disable.)
                c.refusals_expected -= 1
                buf = buf[1:]
                continue
            if len(buf) < 5:
                break
            kind = chr(buf[0])
            (length,) = struct.unpack("!I", buf[1:5])
            if len(buf) < 1 + length:
                break
            body = buf[5 : 1 + length]
            buf = buf[1 + length :]
            if kind == "Z":
                TALLY.round_trips += 1
                c.in_block = body[:1] in (b"T", b"E")
                if c.in_flight:
                    text, sent = c.in_flight.popleft()
                    entry = TALLY.by_statement.setdefault(text, [0, 0.0])
                    entry[0] += 1
                    entry[1] += (time.perf_counter() - sent) * 1000
            elif kind == "C":
                tag = body.rstrip(b"\0").decode(errors="replace").split(" ", 1)[0]
                TALLY.tags[tag] += 1
                # BEGIN/COMMIT tags move the block state too: in a pipeline, several
                # statements complete before the one ReadyForQuery that reports it.
                if tag == "BEGIN":
                    c.in_block = True
                elif tag == "COMMIT":
                    TALLY.commits += 1
                    c.in_block = False
                elif tag == "ROLLBACK":
                    TALLY.rollbacks += 1
                    c.in_block = False
                elif not c.in_block and tag not in ("BEGIN", "LISTEN", "SET"):
                    if tag in WRITE_VERBS or c.next_notify:
                        TALLY.autocommit_writes += 1
                    else:
                        TALLY.read_only_autocommit += 1
            elif kind == "A":
                TALLY.notifications += 1
        await writer.drain()


async def handle(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, target: tuple[str, int]
) -> None:
    TALLY.connections += 1
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    c = Conn()
    up = asyncio.create_task(pump_up(client_r, server_w, c))
    down = asyncio.create_task(pump_down(server_r, client_w, c))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (up, down):
            t.cancel()
        for w in (server_w, client_w):
            w.close()


async def stats(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = (await reader.readline()).strip()
    snapshot = TALLY.as_json()  # the counters so far; "reset" zeroes them after reading
    if line == b"reset":
        TALLY.reset()
    writer.write(json.dumps(snapshot).encode())
    await writer.drain()
    writer.close()


async def main(port: int, stats_port: int, target: tuple[str, int]) -> None:
    proxy = await asyncio.start_server(lambda r, w: handle(r, w, target), "127.0.0.1", port)
    st = await asyncio.start_server(stats, "127.0.0.1", stats_port)
    async with proxy, st:
        await asyncio.gather(proxy.serve_forever(), st.serve_forever())


def read_stats(stats_port: int, reset: bool = False) -> dict[str, Any]:
    """Client side: fetch (and optionally zero) the counters of a running proxy."""
    import socket

    with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as s:
        s.sendall(b"reset\n" if reset else b"get\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return dict(json.loads(data))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stats-port", type=int, required=True)
    p.add_argument("--target", default="127.0.0.1:5432")
    a = p.parse_args()
    host, _, tport = a.target.rpartition(":")
    asyncio.run(main(a.port, a.stats_port, (host, int(tport))))
