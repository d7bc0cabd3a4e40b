"""An HTTP/1.0 reply's Transfer-Encoding is ignored (the body runs to EOF), as Go reads it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from app.drivers.http import new_session
from app.drivers.http10 import unframe_http10

WRAPPED = b'  {"status": 200, "headers": {}, "body": "\\"Hi\\""}'


def test_an_http10_head_loses_its_transfer_encoding_and_nothing_else() -> None:
    head = b"HTTP/1.0 201 Created\r\nTransfer-Encoding: chunked\r\nX-Inngest-SDK: py\r\n\r\n"
    assert unframe_http10(head + WRAPPED) == (
        b"HTTP/1.0 201 Created\r\nX-Inngest-SDK: py\r\n\r\n" + WRAPPED
    )


def test_an_http11_reply_and_a_body_that_names_the_header_are_untouched() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert unframe_http10(head + b"4\r\nabcd\r\n0\r\n\r\n") == head + b"4\r\nabcd\r\n0\r\n\r\n"
    body = b"HTTP/1.0 200 OK\r\n\r\n\r\nTransfer-Encoding: chunked"
    assert unframe_http10(body) == body


class _Server:
    """Answers each request with ``reply`` (its head split over two writes), then closes."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.done: list[asyncio.Future[None]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        finished = asyncio.get_running_loop().create_future()
        self.done.append(finished)
        try:
            await reader.readuntil(b"\r\n\r\n")
            for part in (self.reply[:20], self.reply[20:]):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)
        finally:
            writer.close()
            await writer.wait_closed()
            finished.set_result(None)


@contextlib.asynccontextmanager
async def _serve(reply: bytes) -> AsyncIterator[str]:
    handler = _Server(reply)
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await asyncio.gather(*handler.done)
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (b"HTTP/1.0 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n" + WRAPPED, WRAPPED),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nxyz", b"xyz"),
    ],
)
async def test_the_sdk_client_reads_each_framing(reply: bytes, body: bytes) -> None:
    session = new_session(call_timeout=5, max_connections=4)
    try:
        async with _serve(reply) as url, session.post(url, data=b"{}") as response:
            assert await response.read() == body
    finally:
        await session.close()


async def test_without_the_lenient_protocol_aiohttp_refuses_the_10_reply() -> None:
    # What the lenient protocol is for: aiohttp on its own believes the header.
    reply = b"HTTP/1.0 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n" + WRAPPED
    async with _serve(reply) as url, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(url, data=b"{}") as response:
                await response.read()
