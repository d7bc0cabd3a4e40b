"""A minimal, fast SDK stand-in that speaks the Inngest call protocol (raw asyncio HTTP/1.1).

It is what the engine benchmarks call instead of a real SDK, so that the SDK's own CPU is not
what gets measured.  Run in its own process::

    python -m bench.stub_sdk --port 9001

``POST /api?fnId=…&stepId=…`` reads ``ctx.stack.stack`` from the body: with ``n`` completed
steps it answers 206 ``[{"op": "StepRun", …}]`` for step ``n`` until ``event.data.k`` steps
(default 3) are done, then 200.  ``event.data.mode == "wait"`` makes the first call a
``WaitForEvent`` op (``event.data.wait_event`` / ``wait_if``); the call that resumes it is
timestamped, so the pause benchmark can measure event → resume.  ``GET /stats`` returns call
counts, this process's CPU time and the resume timestamps; ``GET /health`` answers 200.
Only binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import time
from typing import Any

HEADERS = (
    b"Content-Type: application/json\r\nX-Inngest-SDK: inngest-py:v0.5.19\r\n"
    b"X-Inngest-Req-Version: 2\r\n"
)
REASONS = {200: b"OK", 206: b"Partial Content", 400: b"Bad Request", 404: b"Not Found"}
_IDS = [hashlib.sha1(f"s{i}".encode()).hexdigest() for i in range(1000)]
WAIT_ID = hashlib.sha1(b"wait").hexdigest()
MAX_RECORDS = 200_000


class Stats:
    def __init__(self) -> None:
        self.calls = 0
        self.finished = 0
        self.resumed: dict[str, int] = {}  # run id -> time.time_ns() of the resuming call


STATS = Stats()


def handle_call(body: bytes) -> tuple[int, Any]:
    req = json.loads(body)
    data = (req.get("event") or {}).get("data") or {}
    n = len(req["ctx"]["stack"]["stack"])
    STATS.calls += 1
    if data.get("mode") == "wait":
        if n == 0:
            op = {
                "id": WAIT_ID,
                "op": "WaitForEvent",
                "name": str(data.get("wait_event", "bench/resume")),
                "displayName": "wait",
                "opts": {
                    "event": str(data.get("wait_event", "bench/resume")),
                    "if": data.get("wait_if"),
                    "timeout": "1h",
                },
            }
            return 206, [op]
        if len(STATS.resumed) < MAX_RECORDS:
            STATS.resumed[req["ctx"]["run_id"]] = time.time_ns()
        STATS.finished += 1
        return 200, {"resumed": True}
    k = int(data.get("k", 3))
    if n < k:
        return 206, [
            {"id": _IDS[n], "op": "StepRun", "name": f"s{n}", "displayName": f"s{n}", "data": n}
        ]
    STATS.finished += 1
    return 200, {"steps": n}


def stats() -> dict[str, Any]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "calls": STATS.calls,
        "finished": STATS.finished,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "resumed": STATS.resumed,
    }


def response(status: int, payload: Any) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return (
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"OK"))
        + HEADERS
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def serve_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            body = await reader.readexactly(length) if length else b""
            path = target.split("?", 1)[0]
            if method == "POST" and path == "/api":
                try:
                    status, payload = handle_call(body)
                except (ValueError, KeyError, TypeError) as exc:
                    status, payload = 400, {"message": str(exc)}
            elif path == "/stats":
                status, payload = 200, stats()
            elif path == "/health":
                status, payload = 200, {"ok": True}
            else:
                status, payload = 404, {"message": "not found"}
            writer.write(response(status, payload))
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve_conn, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    asyncio.run(main(p.parse_args().port))
