"""A stand-in for an SDK app whose replies a self-hosted server must not believe.

It answers every function call with ``200 {"forged": true}`` as if the function returned, and
counts the calls per function (``GET /calls``).  The function id (``fnId``) picks the lie:

* ``*-wrong-key``: signed, but with ``FORGED_SIGNING_KEY`` (not the server's key), as
  ``inngest-py:v0.5.19``;
* ``*-unsigned``: no signature, from ``inngest-js:v4.24.0`` (a release that signs);
* ``*-old-sdk``: no signature, from ``inngest-py:v0.4.8`` (a release that never signed).

Start: ``python tests/e2e/apps/forged_app.py --port N``; ``GET /healthz`` answers when ready.
Standard library only, so nothing of Stepwell or the SDKs is used to make the signature.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import json
import os
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_CALLS: collections.Counter[str] = collections.Counter()
_LOCK = threading.Lock()
_BODY = b'{"forged": true}'


def _signature(body: bytes, key: str) -> str:
    t = str(int(time.time()))
    bare = re.sub(r"^signkey-\w+-", "", key)
    mac = hmac.new(bare.encode(), body + t.encode(), hashlib.sha256).hexdigest()
    return f"t={t}&s={mac}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b'{"ok": true}', {})
        elif self.path == "/calls":
            with _LOCK:
                counts = dict(_CALLS)
            self._reply(200, json.dumps(counts).encode(), {})
        else:
            self._reply(404, b"{}", {})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        fn_id = (query.get("fnId") or [""])[0]
        with _LOCK:
            _CALLS[fn_id] += 1
        headers = {"X-Inngest-Req-Version": "2"}
        if fn_id.endswith("-wrong-key"):
            headers["X-Inngest-SDK"] = "inngest-py:v0.5.19"
            headers["X-Inngest-Signature"] = _signature(_BODY, os.environ["FORGED_SIGNING_KEY"])
        elif fn_id.endswith("-unsigned"):
            headers["X-Inngest-SDK"] = "inngest-js:v4.24.0"
        else:
            headers["X-Inngest-SDK"] = "inngest-py:v0.4.8"
        self._reply(200, _BODY, headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
