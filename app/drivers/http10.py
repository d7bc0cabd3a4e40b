"""Read an HTTP/1.0 reply that carries ``Transfer-Encoding`` the way Inngest's Go client does.

``Transfer-Encoding`` is an HTTP/1.1 mechanism: an HTTP/1.0 message that names it is framed by
the connection's close, whatever the header says (RFC 9112 §6.1).  Go's ``net/http`` ignores the
header on an HTTP/1.0 reply and reads the body to EOF; aiohttp's parser believes it and fails on
the first byte that is not a chunk size.  A 1.0 hop that copies a streaming SDK's headers onto an
unchunked body is ordinary (Python's ``http.server`` is 1.0, and the Python SDK's own streaming
tests answer through one), so SDK calls use this protocol: at the start of each reply it reads
the status line and, for HTTP/1.0 only, drops ``Transfer-Encoding`` from the header block before
aiohttp's parser sees it.  Everything else passes through untouched.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

#: Header blocks longer than this are not inspected (aiohttp refuses them anyway).
MAX_HEAD = 64 * 1024
_TE_LINE = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*", re.IGNORECASE)


def unframe_http10(head: bytes) -> bytes:
    """``head`` (bytes up to and past the blank line) without Transfer-Encoding if it is 1.0."""
    if not head.startswith(b"HTTP/1.0 "):
        return head
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return head
    return _TE_LINE.sub(b"", head[: end + 2]) + head[end + 2 :]


class Http10Lenient(ResponseHandler):
    """aiohttp's response protocol, sniffing each reply's head (see the module docstring)."""

    _sniffing = False
    _head = b""

    def set_response_params(self, **kwargs: Any) -> None:
        # Called once per request, before its reply is parsed (and before buffered bytes
        # are drained into the new parser).
        self._sniffing = True
        self._head = b""
        super().set_response_params(**kwargs)

    def data_received(self, data: bytes) -> None:
        if self._sniffing and data and self._parser is not None:
            head = self._head + data
            if b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                self._head = head
                return
            self._sniffing = False
            self._head = b""
            data = unframe_http10(head)
        super().data_received(data)

    def _flush(self) -> None:
        if self._head:
            head, self._head, self._sniffing = self._head, b"", False
            super().data_received(head)

    def eof_received(self) -> None:
        self._flush()
        super().eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._flush()
        super().connection_lost(exc)


def use_lenient_protocol(connector: aiohttp.TCPConnector) -> None:
    """Make ``connector`` build ``Http10Lenient`` protocols for its connections."""
    connector._factory = functools.partial(Http10Lenient, loop=connector._loop)  # type: ignore[assignment]
