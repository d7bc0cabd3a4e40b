"""Lifecycle events a run emits when it ends (``inngest/function.finished|failed|cancelled``).

Rules (protocol §4.3, semantics §1.8): one ``function.finished`` per run with a fresh id, plus
``function.failed`` / ``function.cancelled`` whose id is the run id (so downstream consumers can
dedupe); runs triggered by ``function.finished``/``function.failed`` emit nothing, so an
onFailure handler cannot trigger itself.  A failed run's ``error`` is Inngest's StandardError
of the SDK's error, its ``result`` the SDK's error itself (``domain.sdk_errors``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from domain.effects import Effect, EmitEvent, FinishRun
from domain.ids import deterministic_ulid, is_ulid, ulid_ms
from domain.run import RunState, RunStatus
from domain.sdk_errors import standard_error

FINISHED = "inngest/function.finished"
FAILED = "inngest/function.failed"
CANCELLED = "inngest/function.cancelled"
INVOKED = "inngest/function.invoked"
DEFERRED = "inngest/deferred.schedule"
SILENT_TRIGGERS = frozenset({FINISHED, FAILED})


def finish_effects(after: RunState, new_id: Callable[[], str], now_ms: int) -> list[Effect]:
    effects: list[Effect] = [FinishRun(run_id=after.run_id)]
    effects.extend(defer_effects(after, now_ms))
    first = after.events[0] if after.events else {}
    if not isinstance(first, Mapping) or first.get("name") in SILENT_TRIGGERS:
        return effects
    data = finished_data(after, first)
    effects.append(EmitEvent(internal_id=new_id(), event=_event(FINISHED, new_id(), data, now_ms)))
    extra = _EXTRA.get(after.status) if after.status else None
    if extra is not None:
        effects.append(
            EmitEvent(internal_id=new_id(), event=_event(extra, after.run_id, data, now_ms))
        )
    return effects


_EXTRA = {RunStatus.FAILED: FAILED, RunStatus.CANCELLED: CANCELLED}


def defer_effects(after: RunState, now_ms: int) -> list[Effect]:
    """One ``inngest/deferred.schedule`` event per defer still due when the run ends.

    Its id is derived from (run, defer), so a finish decided twice emits the same event; the
    companion function's trigger (``event.data._inngest.fn_slug == '<slug>'``) picks it up.
    """
    effects: list[Effect] = []
    for hashed_id, entry in after.defers.items():
        if entry["status"] != "AfterRun":
            continue
        event_id = defer_event_id(after.run_id, hashed_id, now_ms)
        data = dict(entry["input"] or {})
        data["_inngest"] = {
            "fn_slug": entry["fn_slug"],
            "parent_app_id": after.app_id,
            "parent_fn_id": after.function_id,
            "parent_fn_slug": after.function_slug,
            "parent_run_id": after.run_id,
        }
        event = _event(DEFERRED, event_id, data, now_ms)
        if entry.get("meta"):
            event["meta"] = entry["meta"]
        effects.append(EmitEvent(internal_id=event_id, event=event))
    return effects


def defer_event_id(run_id: str, hashed_id: str, now_ms: int) -> str:
    """The id of the ``deferred.schedule`` event of defer ``hashed_id`` of run ``run_id``."""
    ms = ulid_ms(run_id) if is_ulid(run_id) else now_ms
    return deterministic_ulid(ms, f"defer-event:{run_id}:{hashed_id}")


def finished_data(run: RunState, first: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "function_id": run.function_slug,
        "run_id": run.run_id,
        "event": dict(first),
        "events": [dict(e) for e in run.events],
        "_inngest": {"status": run.status.value if run.status else ""},
    }
    if run.status is RunStatus.COMPLETED:
        # Always present, even for a function that returned nothing: an invoking parent
        # resumes with {"data": result} only when the key exists.
        data["result"] = run.output
    elif run.status is RunStatus.FAILED:
        # Inngest's StandardError, which onFailure handlers and invoking parents read; the
        # SDK's own object, with every field it sent (``code``…), rides along in ``result``.
        data["error"] = standard_error(run.error, run.failure_reason)
        data["result"] = run.error
    elif run.status is RunStatus.CANCELLED:
        data["error"] = {"name": "InngestCancelled", "message": "function run was cancelled"}
    correlation = correlation_id(first)
    if correlation:
        data["correlation_id"] = correlation
    return data


def correlation_id(event: Mapping[str, Any]) -> str | None:
    if event.get("name") != INVOKED:
        return None
    meta = (event.get("data") or {}).get("_inngest") or {}
    value = meta.get("correlation_id") if isinstance(meta, Mapping) else None
    return str(value) if value else None


def _event(name: str, event_id: str, data: dict[str, Any], now_ms: int) -> dict[str, Any]:
    return {"name": name, "id": event_id, "data": data, "user": {}, "ts": now_ms}
