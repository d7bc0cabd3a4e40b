"""Run and step metadata: parsing, validation, limits and how updates of one kind combine.

Metadata is a JSON object per (span, kind) that SDKs attach to a run or a step — from inside
a ``step.run`` it rides on the step's op (``Op.metadata``), from anywhere else it is posted to
``POST /v1/runs/{id}/metadata``.  Each update is ``{kind, op, values}``; the server keeps every
update in the run's history (``MetadataAdded``) and the trace combines the updates of one kind
on one span in order (``combine``).  Rules and limits are upstream's (``pkg/tracing/metadata``,
``pkg/consts``):

* ``kind`` is at most 128 bytes; an ``inngest.``-prefixed kind must be one SDKs may set (the
  others are the server's own); ``inngest.score`` values are ``{name: {"value": number|bool}}``.
* ``op`` is ``merge`` (keys replace keys), ``set`` (replace all), ``delete`` (drop keys) or
  ``add`` (add numbers key by key).
* one update's values are at most 64 KiB and a run's updates at most 1 MiB together, both
  counted as key bytes plus value JSON bytes.

Stepwell adds a count limit (``MAX_UPDATES_PER_RUN``): upstream counts only bytes, so empty
updates would be free, and each one is a history row here.

Errors: ``InvalidMetadata`` (a malformed or disallowed update, 400 on the API) and its
subclass ``MetadataTooLarge`` (over a size or count limit, 413).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain import history as h
from domain.run import RunState

MAX_KIND_LENGTH = 128
MAX_SPAN_BYTES = 64 * 1024
MAX_RUN_BYTES = 1024 * 1024
#: Stepwell's own: updates (kept or rejected) recorded per run.
MAX_UPDATES_PER_RUN = 1000
MAX_SCORE_NAME_BYTES = 128

OPS = ("merge", "set", "delete", "add")
#: Scopes an op's metadata may name (upstream's executor refuses others); the API derives its
#: scope from the target instead: ``run``, ``step`` or ``extended_trace``.
OP_SCOPES = frozenset({"run", "step", "step_attempt", "request"})
ALLOWED_INNGEST_KINDS = frozenset(
    {
        "inngest.ai",
        "inngest.http",
        "inngest.http.timing",
        "inngest.response_headers",
        "inngest.warnings",
        "inngest.experiment",
        "inngest.score",
    }
)


class InvalidMetadata(ValueError):
    """An update the server will not record; ``str()`` says why."""


class MetadataTooLarge(InvalidMetadata):
    """An update (or the run's updates together) over a size or count limit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    kind: str
    op: str
    values: dict[str, Any]

    @property
    def size(self) -> int:
        return values_size(self.values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where an API update goes: the run, a step (hashed id), an attempt of it, or a span."""

    scope: str = "run"
    step_id: str | None = None
    attempt: int | None = None
    span_id: str | None = None


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def values_size(values: Mapping[str, Any]) -> int:
    """Upstream's cost of a values object: key bytes plus each value's JSON bytes."""
    return sum(len(k.encode()) + _json_bytes(v) for k, v in values.items())


def parse_update(raw: Any) -> Update:
    """One ``{kind, op, values}`` object, shape-checked (``op`` defaults to merge, as the
    zero value does upstream; ``values`` may be null)."""
    if not isinstance(raw, Mapping):
        raise InvalidMetadata(f"an update must be an object, got {_type(raw)}")
    kind, op, values = raw.get("kind"), raw.get("op", "merge"), raw.get("values")
    if not isinstance(kind, str) or not kind:
        raise InvalidMetadata("kind must be a non-empty string")
    if not isinstance(op, str) or op.lower() not in OPS:
        raise InvalidMetadata(f"op must be one of {', '.join(OPS)}, got {op!r}")
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise InvalidMetadata(f"values must be an object, got {_type(values)}")
    return Update(kind=kind, op=op.lower(), values=dict(values))


def validate_allowed(update: Update) -> None:
    """Upstream's ``ValidateAllowed``: kind length, the ``inngest.*`` allowlist, score values."""
    if len(update.kind.encode()) > MAX_KIND_LENGTH:
        raise InvalidMetadata("invalid kind: kind exceeds maximum length")
    if update.kind.startswith("inngest.") and update.kind not in ALLOWED_INNGEST_KINDS:
        raise InvalidMetadata(
            f"kind {update.kind!r}: inngest-prefixed kind is not in the allowlist"
        )
    if update.kind == "inngest.score":
        for name, holder in update.values.items():
            _check_score(name, holder)


def _check_score(name: str, holder: Any) -> None:
    if len(name.encode()) > MAX_SCORE_NAME_BYTES:
        raise InvalidMetadata(f"invalid score name {name!r}: score name exceeds maximum length")
    if any(ord(ch) < 0x20 or ch in "\x7f'" for ch in name):
        raise InvalidMetadata(f"invalid score name {name!r}: it contains invalid characters")
    value = holder.get("value") if isinstance(holder, Mapping) else None
    shape_ok = isinstance(holder, Mapping) and set(holder) <= {"value"}
    finite = _is_number(value) and math.isfinite(float(value))  # type: ignore[arg-type]
    if not shape_ok or not (isinstance(value, bool) or finite):
        raise InvalidMetadata("invalid score value: it must be a finite number or boolean")


def check_size(update: Update) -> None:
    if update.size > MAX_SPAN_BYTES:
        raise MetadataTooLarge("Metadata span exceeds maximum size of 64KB")


def check_run_budget(used_bytes: int, used_count: int, updates: list[Update]) -> None:
    """Whether ``updates`` fit in what the run has left; raises ``MetadataTooLarge``."""
    if used_count + len(updates) > MAX_UPDATES_PER_RUN:
        raise MetadataTooLarge(f"a run may carry at most {MAX_UPDATES_PER_RUN} metadata updates")
    if used_bytes + sum(u.size for u in updates) > MAX_RUN_BYTES:
        raise MetadataTooLarge("Cumulative metadata size exceeds limit of 1MB per run")


def hashed_step_id(step_id: str, index: int | None) -> str:
    """The id the SDKs hash a step's user id to (``id:index`` for the n-th repeat of it)."""
    raw = step_id if not index else f"{step_id}:{index}"
    return hashlib.sha1(raw.encode()).hexdigest()


def parse_target(raw: Any) -> Target:
    """The API's ``target`` with upstream's rules; ``step_attempt`` < 0 means the latest."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidMetadata(f"target must be an object, got {_type(raw)}")
    step_id, index = raw.get("step_id"), raw.get("step_index")
    attempt, span_id = raw.get("step_attempt"), raw.get("span_id")
    for name, value, kind in (
        ("step_id", step_id, str),
        ("span_id", span_id, str),
        ("step_index", index, int),
        ("step_attempt", attempt, int),
    ):
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise InvalidMetadata(f"target.{name} must be a {kind.__name__}")
    if step_id is None:
        for name, value in (("step_index", index), ("step_attempt", attempt), ("span_id", span_id)):
            if value is not None:
                raise InvalidMetadata(f"target.step_id must be defined if target.{name} is defined")
        return Target()
    # As upstream: a span id counts only with an attempt (any, even -1: "the latest").
    extended = attempt is not None and span_id is not None
    return Target(
        scope="extended_trace" if extended else "step",
        step_id=hashed_step_id(step_id, index),
        attempt=None if attempt is None or attempt < 0 else attempt,
        span_id=span_id if extended else None,
    )


def combine(current: dict[str, Any], values: Mapping[str, Any], op: str) -> dict[str, Any]:
    """The values of a kind after one more update (upstream's ``Values.Combine``)."""
    if op == "set":
        return dict(values)
    out = dict(current)
    if op == "delete":
        for key in values:
            out.pop(key, None)
    elif op == "add":
        for key, value in values.items():
            if not _is_number(out.get(key)):
                out[key] = value
            elif _is_number(value):
                out[key] = out[key] + value
    else:
        out.update(values)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --- what gets recorded (called by ``domain.decide``) ---


def op_events(
    state: RunState, step_id: str, attempt: int | None, raw_updates: tuple[Any, ...], now: int
) -> list[h.HistoryEvent]:
    """The history events for the metadata riding on one op of ``step_id``.

    ``attempt`` is set when the op was a failed attempt that will be retried (its metadata
    belongs to that attempt, as upstream's retry span).  A bad or over-limit update is kept as
    ``MetadataRejected`` and never fails the run; past the count limit nothing is recorded.
    """
    out: list[h.HistoryEvent] = []
    used_bytes, used_count = state.metadata_bytes, state.metadata_count
    for raw in raw_updates:
        if used_count >= MAX_UPDATES_PER_RUN:
            break
        used_count += 1
        kind = raw.get("kind") if isinstance(raw, Mapping) else None
        try:
            update = parse_update(raw)
            scope = str(raw.get("scope") or "").lower()
            if scope not in OP_SCOPES:
                raise InvalidMetadata(f"unknown metadata scope {raw.get('scope')!r}")
            validate_allowed(update)
            check_size(update)
            check_run_budget(used_bytes, 0, [update])
        except InvalidMetadata as exc:
            reason = str(exc)
            out.append(
                h.MetadataRejected(
                    at=now, step_id=step_id, kind=str(kind or "")[:MAX_KIND_LENGTH], reason=reason
                )
            )
            continue
        used_bytes += update.size
        out.append(
            h.MetadataAdded(
                at=now, scope=scope, kind=update.kind, op=update.op, values=update.values,
                size=update.size, source="op", step_id=step_id,
                attempt=attempt if scope != "run" else None,
            )
        )  # fmt: skip
    return out


def api_refusal(state: RunState, updates: tuple[Update, ...]) -> str | None:
    """Why an API request cannot be recorded on the run as it stands (None: it can)."""
    if not state.exists:
        return "not_found"
    if state.is_finished:
        return "ended"
    try:
        check_run_budget(state.metadata_bytes, state.metadata_count, list(updates))
    except MetadataTooLarge as exc:
        return str(exc)
    return None


def api_events(
    state: RunState, target: Target, updates: tuple[Update, ...], now: int
) -> list[h.HistoryEvent]:
    """All of an API request's updates, or none when ``api_refusal`` names a reason."""
    if api_refusal(state, updates) is not None:
        return []
    return [_api_event(target, u, now) for u in updates]


def _api_event(target: Target, u: Update, now: int) -> h.MetadataAdded:
    return h.MetadataAdded(
        at=now, scope=target.scope, kind=u.kind, op=u.op, values=u.values, size=u.size,
        source="api", step_id=target.step_id, attempt=target.attempt, span_id=target.span_id,
    )  # fmt: skip
