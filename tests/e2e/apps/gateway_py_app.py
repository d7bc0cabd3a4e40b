"""Stepwell e2e app for ``step.ai.infer`` (op AIGateway) with the official ``inngest`` Python SDK.

Start:  python tests/e2e/apps/gateway_py_app.py --port 8124

Env:
  STEPWELL_URL      server origin, e.g. http://127.0.0.1:8288 (required; dev mode)
  GW_PROVIDER_KEY   the API key the adapter hands the server for the provider

App id ``e2e-gw-py``, serve path ``/api/inngest``.  One function, ``ai`` (retries 2), on
``e2e/gw.py.ai`` with data ``{provider: "openai" | "anthropic", base_url, prompt}``; it returns
``{"out": <provider JSON>}``.  (The SDK has no ``step.fetch``, and its 0.5 line no Gemini
adapter.)
"""

from __future__ import annotations

import argparse
import os
import typing

_origin = os.environ.get("STEPWELL_URL", "").rstrip("/")
if _origin:
    os.environ["INNGEST_DEV"] = _origin

import fastapi  # noqa: E402
import inngest  # noqa: E402
import inngest.fast_api  # noqa: E402
from inngest.experimental import ai  # noqa: E402

APP_ID = "e2e-gw-py"
client = inngest.Inngest(app_id=APP_ID)


def _adapter(provider: str, base_url: str) -> ai.BaseAdapter:
    key = os.environ.get("GW_PROVIDER_KEY", "")
    if provider == "anthropic":
        return ai.anthropic.Adapter(auth_key=key, base_url=base_url, model="claude-test")
    return ai.openai.Adapter(auth_key=key, base_url=base_url, model="gpt-test")


@client.create_function(fn_id="ai", trigger=inngest.TriggerEvent(event="e2e/gw.py.ai"), retries=2)
async def infer(ctx: inngest.Context) -> dict[str, typing.Any]:
    data = ctx.event.data
    provider = str(data["provider"])
    body: dict[str, typing.Any] = {"messages": [{"role": "user", "content": data["prompt"]}]}
    if provider == "anthropic":
        body["max_tokens"] = 64
    out = await ctx.step.ai.infer(
        "ask", adapter=_adapter(provider, str(data["base_url"])), body=body
    )
    return {"out": out}


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [infer], serve_path="/api/inngest")


@app.get("/healthz")
async def healthz() -> dict[str, typing.Any]:
    return {"ok": True, "app_id": APP_ID}


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = p.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
