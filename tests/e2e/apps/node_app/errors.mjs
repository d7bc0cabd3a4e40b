// Stepwell e2e app for error shapes: official `inngest` JS SDK (v4, pinned in
// package.json) served by `inngest/node` on a plain node:http server.
//
// Each function fails in one way; each has an onFailure handler that returns
// what it received (the `inngest/function.failed` event's data and the Error
// the SDK rebuilt from it), so a test can read that back as the handler run's
// output.
//
// Start:  node tests/e2e/apps/node_app/errors.mjs --port 3940
// Env:    STEPWELL_URL  server origin (required; dev mode, no keys)
//
// App id `errors-node`, serve path `/api/inngest`; slugs `errors-node-<fn id>`.
// Triggers `errors/node.<fn id>`; `data.message` is the thrown error's message.
//
//   raise          the body throws a TypeError with a `code` property
//   step-fails     a step throws an Error (no retries); the body lets it escape
//   non-retriable  a step throws NonRetriableError with a cause (retries: 2)

import { listen } from "./listen.mjs";

const origin = (process.env.STEPWELL_URL || "").replace(/\/+$/, "");
if (origin) process.env.INNGEST_DEV = origin;

const { Inngest, NonRetriableError } = await import("inngest");
const { serve } = await import("inngest/node");

const APP_ID = "errors-node";
const SERVE_PATH = "/api/inngest";
const inngest = new Inngest({ id: APP_ID });

const message = (ctx, fallback) => String(ctx.event.data?.message ?? fallback);

// onFailure: the failed event's data as sent, and what the SDK made of it.
const received = async ({ event, error }) => ({
  event_name: event.name,
  run_id: event.data?.run_id ?? null,
  function_id: event.data?.function_id ?? null,
  error: event.data?.error ?? null,
  result: event.data?.result ?? null,
  rebuilt: { name: error?.name ?? null, message: error?.message ?? null },
});

const fn = (id, retries, body) =>
  inngest.createFunction(
    { id, retries, triggers: [{ event: `errors/node.${id}` }], onFailure: received },
    body,
  );

const raises = fn("raise", 0, async (ctx) => {
  const err = new TypeError(message(ctx, "plain throw"));
  err.code = "E_CUSTOM";
  throw err;
});

const stepFails = fn("step-fails", 0, async (ctx) => {
  await ctx.step.run("boom", () => {
    throw new Error(message(ctx, "step broke"));
  });
});

const nonRetriable = fn("non-retriable", 2, async (ctx) => {
  await ctx.step.run("boom", () => {
    throw new NonRetriableError(message(ctx, "stop here"), {
      cause: new RangeError("root cause"),
    });
  });
});

export const functions = [raises, stepFails, nonRetriable];

const handler = serve({ client: inngest, functions, servePath: SERVE_PATH });

listen(handler, { appId: APP_ID });
