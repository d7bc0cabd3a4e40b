"""SDK opcodes and the outcome of one call to an SDK, as the engine sees them.

The HTTP (or Connect) driver turns a response into a ``CallResult``: the function returned
(``FunctionReturned``), reported steps (``OpsReported``), or failed (``CallFailed``).  Op
parsing is lenient the way the SDKs need it to be: names are matched case-insensitively, a bare
object is accepted where an array is expected, unknown fields are ignored.

``Gateway`` and ``AIGateway`` ops ask the server itself to make an HTTP request; the executor
makes it before deciding and hands what came of it to ``decide`` as data
(``OpsReported.performed``, a ``GatewayOutcome`` per op id), so that ``decide`` stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Opcode(Enum):
    NONE = "None"
    STEP = "Step"
    STEP_RUN = "StepRun"
    STEP_ERROR = "StepError"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE_FUNCTION = "InvokeFunction"
    AI_GATEWAY = "AIGateway"
    GATEWAY = "Gateway"
    WAIT_FOR_SIGNAL = "WaitForSignal"
    RUN_COMPLETE = "RunComplete"
    STEP_FAILED = "StepFailed"
    SYNC_RUN_COMPLETE = "SyncRunComplete"
    DISCOVERY_REQUEST = "DiscoveryRequest"
    DEFER_ADD = "DeferAdd"
    DEFER_ABORT = "DeferAbort"


_BY_LOWER = {op.value.lower(): op for op in Opcode}
LAZY = frozenset({Opcode.DEFER_ADD, Opcode.DEFER_ABORT})
#: Handled before the rest of a response so that ``[WaitForEvent, sendEvent]`` cannot miss.
PRIORITY = frozenset({Opcode.WAIT_FOR_EVENT, Opcode.DEFER_ADD, Opcode.DEFER_ABORT})


class InvalidOp(ValueError):
    """An op the server cannot act on (unknown opcode, wrong shape)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    id: str
    op: Opcode
    name: str = ""
    display_name: str = ""
    opts: Mapping[str, Any] = field(default_factory=dict)
    data: Any = None
    has_data: bool = False
    error: Any = None
    #: Metadata updates riding on the op (TS SDK v4 ``OutgoingOp.metadata``), raw: each is
    #: checked when the op is decided, so one bad update cannot make the whole op unreadable.
    metadata: tuple[Any, ...] = ()

    @property
    def ui_name(self) -> str:
        return self.display_name or self.name or self.id


def parse_op(raw: Any) -> Op:
    if not isinstance(raw, Mapping):
        raise InvalidOp(f"op must be an object, got {type(raw).__name__}")
    opcode = _BY_LOWER.get(str(raw.get("op", "")).lower())
    if opcode is None:
        raise InvalidOp(f"unknown opcode {raw.get('op')!r}")
    opts = raw.get("opts")
    metadata = raw.get("metadata")
    return Op(
        id=str(raw.get("id") or ""),
        op=opcode,
        name=str(raw.get("name") or ""),
        display_name=str(raw.get("displayName") or ""),
        opts=opts if isinstance(opts, Mapping) else {},
        data=raw.get("data"),
        has_data="data" in raw,
        error=raw.get("error"),
        metadata=tuple(metadata) if isinstance(metadata, list) else (),
    )


def parse_ops(body: Any) -> tuple[Op, ...]:
    """A 206 body: a JSON array of ops, or a bare op object (0.x SDKs)."""
    if body is None:
        return ()
    if isinstance(body, Mapping):
        return (parse_op(body),)
    if isinstance(body, list):
        return tuple(parse_op(item) for item in body)
    raise InvalidOp(f"expected an array of ops, got {type(body).__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionReturned:
    """200 from an SDK: the function finished; ``output`` is its JSON return value."""

    output: Any
    request_version: int = -1


#: Ops whose request the server makes on the run's behalf.
GATEWAYS = frozenset({Opcode.GATEWAY, Opcode.AI_GATEWAY})


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayOutcome:
    """What the server's request for a ``Gateway``/``AIGateway`` op came to.

    ``data`` is the step's value on success (memoized as ``{"data": data}``); otherwise
    ``error`` is a ``GatewayError``/``AIGatewayError`` StandardError, which retries the call
    while attempts remain and is memoized as ``{"error": error}`` on the last one.
    """

    data: Any = None
    error: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsReported:
    """206 from an SDK: steps to record or schedule."""

    ops: tuple[Op, ...]
    request_version: int = -1
    #: ``X-Inngest-No-Retry: true`` rode along: a StepError in ``ops`` is final.
    no_retry: bool = False
    retry_after_ms: int | None = None
    #: Op id -> the outcome of the request the server made for that gateway op.
    performed: Mapping[str, GatewayOutcome] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed:
    """The call failed: the function raised, the transport broke, or the reply was no SDK's.

    ``error`` is the error object exactly as the SDK sent it (``domain.sdk_errors``), or one
    Stepwell made (``name``, ``message``) when there was no SDK reply to take it from.
    """

    error: Mapping[str, Any]
    #: The transport's view of the failure (``invalid status code: 500``), for the StandardError
    #: of the lifecycle events; None when the call got no reply.
    reason: str | None = None
    retryable: bool = True
    retry_after_ms: int | None = None
    status: int | None = None
    request_version: int = -1


CallResult = FunctionReturned | OpsReported | CallFailed
