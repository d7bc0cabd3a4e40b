// Stepwell e2e app: official `inngest` JS SDK (v4, pinned in package.json)
// served by `inngest/node` on a plain node:http server.
//
// Start:  (cd tests/e2e/apps/node_app && npm ci)   # once
//         node tests/e2e/apps/node_app/app.mjs --port 3939
//
// Env:
//   STEPWELL_URL      server origin, e.g. http://127.0.0.1:8288 (required)
//   STEPWELL_MODE     "dev" (INNGEST_DEV=<origin>, no keys) or "cloud"
//                     (INNGEST_DEV=0, INNGEST_BASE_URL=<origin>, signed);
//                     default: "cloud" if INNGEST_SIGNING_KEY is set, else "dev"
//   INNGEST_SIGNING_KEY / INNGEST_EVENT_KEY   keys for cloud mode (read by SDK)
//   STEPWELL_E2E_LOG  JSON-lines execution log (same format as ../_log.py)
//   STEPWELL_E2E_CHECKPOINTING=0  disable the SDK's (default-on) checkpointing
//   PORT / --port, HOST / --host
//
// App id `e2e-node`, serve path `/api/inngest`; slugs `e2e-node-<fn id>`.

import fs from "node:fs";
import http from "node:http";
import { parseArgs } from "node:util";

// Translate STEPWELL_* into the env vars the SDK itself reads. Must happen
// before the client is constructed.
const origin = (process.env.STEPWELL_URL || "").replace(/\/+$/, "");
const MODE =
  process.env.STEPWELL_MODE ||
  (process.env.INNGEST_SIGNING_KEY ? "cloud" : "dev");
if (origin) {
  if (MODE === "cloud") {
    process.env.INNGEST_DEV = "0";
    process.env.INNGEST_BASE_URL = origin;
  } else {
    process.env.INNGEST_DEV = origin;
  }
}

const { Inngest, NonRetriableError } = await import("inngest");
const { serve } = await import("inngest/node");

const APP_ID = "e2e-node";
const SERVE_PATH = "/api/inngest";

const clientOpts = { id: APP_ID };
if (process.env.STEPWELL_E2E_CHECKPOINTING === "0") {
  clientOpts.checkpointing = false;
}
const inngest = new Inngest(clientOpts);

function record(fn, step, ctx) {
  const path = process.env.STEPWELL_E2E_LOG;
  if (!path) return;
  const line = JSON.stringify({
    fn,
    step,
    run_id: ctx.runId,
    attempt: ctx.attempt,
    t: Date.now() / 1000,
    pid: process.pid,
  });
  fs.appendFileSync(path, line + "\n"); // O_APPEND, single write
}

// step.run whose body is recorded in the execution log.
const run = (ctx, fn, id, body) =>
  ctx.step.run(id, async () => {
    record(fn, id, ctx);
    return body();
  });

const steps = inngest.createFunction(
  { id: "steps", triggers: [{ event: "e2e/node.steps" }] },
  async (ctx) => {
    const base = Number(ctx.event.data?.base ?? 0);
    const a = await run(ctx, "steps", "a", () => base + 1);
    const b = await run(ctx, "steps", "b", () => a + 1);
    const c = await run(ctx, "steps", "c", () => b * 10);
    return { a, b, c, sum: a + b + c };
  },
);

const sleeper = inngest.createFunction(
  { id: "sleeper", triggers: [{ event: "e2e/node.sleep" }] },
  async (ctx) => {
    const secs = Number(ctx.event.data?.seconds ?? 2);
    const t0 = await run(ctx, "sleeper", "a", () => Date.now() / 1000);
    await ctx.step.sleep("nap", `${secs}s`);
    const t1 = await run(ctx, "sleeper", "b", () => Date.now() / 1000);
    return { a: t0, b: t1, elapsed: t1 - t0, requested: secs };
  },
);

const waiter = inngest.createFunction(
  { id: "waiter", triggers: [{ event: "e2e/node.wait" }] },
  async (ctx) => {
    const secs = Number(ctx.event.data?.timeout ?? 5);
    const opts = { event: "e2e/node.wait.reply", timeout: `${secs}s` };
    if (ctx.event.data?.use_match) opts.match = "data.id";
    else opts.if = "async.data.id == event.data.id";
    const matched = await ctx.step.waitForEvent("wait", opts);
    return { matched };
  },
);

const invokee = inngest.createFunction(
  { id: "invokee", triggers: [{ event: "e2e/node.invokee" }] },
  async (ctx) => {
    const n = Number(ctx.event.data?.n ?? 0);
    return run(ctx, "invokee", "double", () => ({ doubled: n * 2 }));
  },
);

const invoker = inngest.createFunction(
  { id: "invoker", triggers: [{ event: "e2e/node.invoke" }] },
  async (ctx) => {
    const n = Number(ctx.event.data?.n ?? 21);
    try {
      const result = await ctx.step.invoke("call", {
        function: invokee,
        data: { n },
      });
      return { result };
    } catch (err) {
      return { caught: { error: err?.message, name: err?.name } };
    }
  },
);

// --- a few extra paths that differ between the TS and Python SDKs ---------

const flaky = inngest.createFunction(
  { id: "flaky", retries: 2, triggers: [{ event: "e2e/node.flaky" }] },
  async (ctx) => {
    const failTimes = Number(ctx.event.data?.fail_times ?? 1);
    return run(ctx, "flaky", "flaky-step", () => {
      if (ctx.attempt < failTimes) {
        throw new Error(`flaky failure on attempt ${ctx.attempt}`);
      }
      return { ok: true, attempt: ctx.attempt };
    });
  },
);

const nonRetriable = inngest.createFunction(
  {
    id: "non-retriable",
    retries: 3,
    triggers: [{ event: "e2e/node.non-retriable" }],
  },
  async (ctx) => {
    await run(ctx, "non-retriable", "boom", () => {
      throw new NonRetriableError("nope");
    });
  },
);

const alwaysFails = inngest.createFunction(
  {
    id: "always-fails",
    retries: 1,
    triggers: [{ event: "e2e/node.always-fails" }],
    onFailure: async (ctx) => {
      record("always-fails-failure", "on_failure", ctx);
      return {
        handled: true,
        event_name: ctx.event.name,
        original_function_id: ctx.event.data?.function_id,
        original_run_id: ctx.event.data?.run_id,
        original_error: ctx.error?.message ?? ctx.event.data?.error?.message,
      };
    },
  },
  async (ctx) => {
    const msg = String(ctx.event.data?.message ?? "always fails");
    await run(ctx, "always-fails", "fail", () => {
      throw new Error(msg);
    });
  },
);

const parallel = inngest.createFunction(
  { id: "parallel", triggers: [{ event: "e2e/node.parallel" }] },
  async (ctx) => {
    const results = await Promise.all(
      [1, 2, 3].map((i) => run(ctx, "parallel", `p${i}`, () => i * 10)),
    );
    const after = await run(ctx, "parallel", "after", () =>
      results.reduce((x, y) => x + y, 0),
    );
    return { results, after };
  },
);

const sender = inngest.createFunction(
  { id: "sender", triggers: [{ event: "e2e/node.send" }] },
  async (ctx) => {
    const out = await ctx.step.sendEvent("send", {
      name: "e2e/node.sent",
      data: { from_run: ctx.runId, value: ctx.event.data?.value ?? null },
    });
    return { ids: out.ids };
  },
);

const onSent = inngest.createFunction(
  { id: "on-sent", triggers: [{ event: "e2e/node.sent" }] },
  async (ctx) => {
    record("on-sent", "__body__", ctx);
    return ctx.event.data;
  },
);

const noSteps = inngest.createFunction(
  { id: "no-steps", triggers: [{ event: "e2e/node.no-steps" }] },
  async (ctx) => {
    record("no-steps", "__body__", ctx);
    return { hello: ctx.event.data?.name ?? null };
  },
);

export const functions = [
  steps, sleeper, waiter, invoker, invokee,
  flaky, nonRetriable, alwaysFails, parallel, sender, onSent, noSteps,
];

const handler = serve({ client: inngest, functions, servePath: SERVE_PATH });

function main() {
  const { values } = parseArgs({
    options: { port: { type: "string" }, host: { type: "string" } },
  });
  const port = Number(values.port ?? process.env.PORT ?? 3939);
  const host = values.host ?? process.env.HOST ?? "127.0.0.1";
  const server = http.createServer((req, res) => {
    const path = (req.url || "").split("?")[0];
    if (path === SERVE_PATH) return handler(req, res);
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ ok: true, app_id: APP_ID, mode: MODE }));
    }
    res.writeHead(404).end();
  });
  server.listen(port, host, () => {
    console.log(`e2e-node listening on http://${host}:${port}${SERVE_PATH}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
