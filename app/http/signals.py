"""REST v1 signals: ``POST /v1/signals`` resumes the run waiting on a signal.

The TypeScript SDK's ``step.sendSignal`` and ``inngest.sendSignal`` call this route (logic in
``app.engine.signals``).  Shapes are upstream's (``pkg/api/apiv1/signals.go``): the body is
``{"signal": str, "data": any}``; success is 200 ``{"data": {"run_id": ...}}``; no run waiting
on the signal is 404 "No signal found" (the SDK reads a 404 as "sent, nobody waited").  A body
that is not a JSON object with a non-empty string ``signal`` is 400 and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.params import JSONBody

from app.engine.signals import send_signal
from app.http.auth import require_signing_key
from app.http.context import services_of
from app.http.errors import ApiError, error_responses
from app.http.runs import envelope

#: A signal's data becomes the waiting step's output, which Inngest caps at 4 MiB
#: (``consts.MaxStepOutputSize``); larger bodies are 413.
MAX_BODY_BYTES = 4 * 1024 * 1024
NO_SIGNAL = "No signal found"


class SignalRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /v1/signals``; ``signal`` may be absent so that it gets a clear 400."""

    signal: Annotated[
        str, msgspec.Meta(description="Required: the signal a run waits on (step.waitForSignal)")
    ] = ""
    data: Annotated[
        Any, msgspec.Meta(description="Any JSON value, given to the waiting step with the signal")
    ] = None


@post(
    "/v1/signals",
    status_code=200,
    guards=[require_signing_key],
    request_max_body_size=MAX_BODY_BYTES,
    responses=error_responses(400, 401, 404, 413, 503),
    summary="Send a signal",
    operation_id="SendSignal",
    tags=["Signals"],
)
async def receive_signal(
    request: Request[Any, Any, Any], data: JSONBody[SignalRequest]
) -> dict[str, Any]:
    """Resume the run waiting on ``signal``: its step returns ``{"signal", "data"}``.

    Answers with the resumed run's id, or 404 when no run waits on the signal (or the wait
    has expired).  Of two requests sending the same signal at once, one resumes the run and
    the other gets the 404.
    """
    if not data.signal:
        raise ApiError(400, "Invalid signal data: signal must be a non-empty string")
    run_id = await send_signal(services_of(request), data.signal, data.data)
    if run_id is None:
        raise ApiError(404, NO_SIGNAL)
    return envelope({"run_id": run_id})


ROUTES = [receive_signal]
