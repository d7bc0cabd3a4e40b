// Stepwell e2e app for the requests the server makes on a run's behalf:
// `step.fetch` (op Gateway) and `step.ai.infer` (op AIGateway), with the
// official `inngest` JS SDK (v4, pinned in package.json) on node:http.
//
// Start:  node tests/e2e/apps/node_app/gateway.mjs --port 3940
//
// Env:
//   STEPWELL_URL      server origin, e.g. http://127.0.0.1:8288 (required; dev mode)
//   GW_PROVIDER_KEY   the API key step.ai.infer hands the server for the provider
//   PORT / --port, HOST / --host
//
// App id `e2e-gw-node`, serve path `/api/inngest`. Functions (event data in
// brackets; `url`/`base_url` point at a stub the test runs):
//   fetch  e2e/gw.node.fetch  {url, method?, headers?, body?}  retries 1
//          => {status, body, stub_header} or {caught: {name, message}}
//   ai     e2e/gw.node.ai     {provider: openai|anthropic|gemini, base_url, prompt}
//          retries 2 => {out: <provider JSON>}

import { listen } from "./listen.mjs";

const origin = (process.env.STEPWELL_URL || "").replace(/\/+$/, "");
if (origin) process.env.INNGEST_DEV = origin;

const { Inngest } = await import("inngest");
const { serve } = await import("inngest/node");

const APP_ID = "e2e-gw-node";
const SERVE_PATH = "/api/inngest";
const KEY = process.env.GW_PROVIDER_KEY || "";

const inngest = new Inngest({ id: APP_ID });

const fetchFn = inngest.createFunction(
  { id: "fetch", retries: 1, triggers: [{ event: "e2e/gw.node.fetch" }] },
  async ({ event, step }) => {
    const d = event.data;
    const init = { method: d.method ?? "GET" };
    if (d.headers) init.headers = d.headers;
    if (d.body !== undefined) init.body = d.body;
    try {
      const res = await step.fetch(d.url, init);
      return {
        status: res.status,
        body: await res.text(),
        stub_header: res.headers.get("x-stub"),
      };
    } catch (err) {
      return { caught: { name: err.name, message: err.message } };
    }
  },
);

function model(models, provider, baseUrl) {
  if (provider === "anthropic") {
    return models.anthropic({
      model: "claude-test",
      apiKey: KEY,
      baseUrl,
      defaultParameters: { max_tokens: 64 },
    });
  }
  if (provider === "gemini") {
    return models.gemini({ model: "gemini-test", apiKey: KEY, baseUrl });
  }
  return models.openai({ model: "gpt-test", apiKey: KEY, baseUrl });
}

function body(provider, prompt) {
  if (provider === "gemini") {
    return { contents: [{ role: "user", parts: [{ text: prompt }] }] };
  }
  return { messages: [{ role: "user", content: prompt }] };
}

const aiFn = inngest.createFunction(
  { id: "ai", retries: 2, triggers: [{ event: "e2e/gw.node.ai" }] },
  async ({ event, step }) => {
    const { provider, base_url: baseUrl, prompt } = event.data;
    const out = await step.ai.infer("ask", {
      model: model(step.ai.models, provider, baseUrl),
      body: body(provider, prompt),
    });
    return { out };
  },
);

const handler = serve({
  client: inngest,
  functions: [fetchFn, aiFn],
  servePath: SERVE_PATH,
});

listen(handler, { appId: APP_ID });
