"""The error a failed step or run carries, as the SDK sent it, and the shape each reader gets.

An SDK reports a failure as a JSON object: the Python SDK sends ``code``, ``message``, ``name``
and ``stack`` (``null`` when there is none, e.g. ``step_unexpected``; absent for
``output_unserializable``), the TypeScript SDK ``name``, ``message``, ``stack``, an optional
``code`` and ``cause`` and the ``__serialized`` marker.  Stepwell stores that object verbatim
(``sdk_error``), so a run's output, a step's memo and its trace show every field the SDK sent;
nothing here adds, drops or rewrites a field of an object.

Only the ``inngest/function.finished|failed`` events reshape it, into Inngest's StandardError
(``standard_error``): ``error``, ``name``, ``message``, ``stack`` (left out when empty) and
``cause`` (kept when sent).  That is what onFailure handlers and invoking parents read, and what
the official SDKs' own test suites assert; the verbatim object rides along in ``result``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DEFAULT_NAME = "Error"
DEFAULT_MESSAGE = "Function execution error"


def sdk_error(body: Any, status: int | None = None, *, from_sdk: bool = True) -> dict[str, Any]:
    """The error object of a failed call's reply body, every field kept.

    A body ``{"error": {...}}`` is already wrapped and gives its inner object; any other JSON
    object is the error itself.  A body that is no object (text, a bare JSON value, nothing)
    becomes ``{"name": "Error", "message": <the text>}``.  An object from something that is
    not an SDK (a proxy, an app's own auth layer) gets ``name`` and ``message`` when it lacks
    them, so that it reads as an error; an SDK's object is never changed.
    """
    if isinstance(body, Mapping):
        inner = body.get("error")
        found = dict(inner) if isinstance(inner, Mapping) else dict(body)
        if not from_sdk:
            found["name"] = found.get("name") or DEFAULT_NAME
            found["message"] = found.get("message") or (
                body["error"] if _text(body.get("error")) else DEFAULT_MESSAGE
            )
        return found
    if isinstance(body, str) and body:
        return plain_error(DEFAULT_NAME, body)
    if body is not None and not isinstance(body, str):
        return plain_error(DEFAULT_NAME, json.dumps(body))
    return plain_error(DEFAULT_NAME, f"SDK answered HTTP {status}" if status else DEFAULT_MESSAGE)


def plain_error(name: str, message: str) -> dict[str, Any]:
    """An error Stepwell itself raises (no SDK object behind it)."""
    return {"name": name, "message": message}


def failure_reason(status: int, no_retry: bool) -> str:
    """Why the attempt failed as the transport saw it: Inngest's driver error text."""
    return "NonRetriableError" if no_retry else f"invalid status code: {status}"


def standard_error(error: Any, reason: str | None = None) -> dict[str, Any]:
    """Inngest's StandardError of a failed run, for its lifecycle events.

    ``name``, ``message`` and ``stack`` are taken when they are non-empty strings, ``cause``
    whenever it was sent; ``error`` is the object's own ``error`` text, else ``reason`` (the
    transport's view, e.g. ``invalid status code: 500``), else the message.  A missing message
    falls back to ``reason`` too.
    """
    fields = error if isinstance(error, Mapping) else {"message": error}
    text = {k: v for k in ("error", "name", "message", "stack") if _text(v := fields.get(k))}
    message = text.get("message") or reason or DEFAULT_MESSAGE
    out: dict[str, Any] = {
        "error": text.get("error") or reason or message,
        "name": text.get("name") or DEFAULT_NAME,
        "message": message,
    }
    if "stack" in text:
        out["stack"] = text["stack"]
    if "cause" in fields:
        out["cause"] = fields["cause"]
    return out


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""
