// Stepwell e2e app for signals: official `inngest` JS SDK (v4) step.waitForSignal and
// step.sendSignal, served by `inngest/node` on a plain node:http server.  (The Python SDK has
// no signal tools, so signals are tested with this app only.)
//
// Start:  node tests/e2e/apps/node_app/signals.mjs --port 3940
//
// Env:
//   STEPWELL_URL      server origin, e.g. http://127.0.0.1:8288 (required)
//   STEPWELL_MODE     "dev" (INNGEST_DEV=<origin>, no keys) or "cloud"
//                     (INNGEST_DEV=0, INNGEST_BASE_URL=<origin>, signed);
//                     default: "cloud" if INNGEST_SIGNING_KEY is set, else "dev"
//   INNGEST_SIGNING_KEY / INNGEST_EVENT_KEY   keys for cloud mode (read by SDK)
//   PORT / --port, HOST / --host
//
// App id `e2e-signals`, serve path `/api/inngest`; slugs `e2e-signals-<fn id>`:
//   waiter  (e2e/signals.wait {signal, timeout?, conflict?}) -> {got: {signal, data} | null}
//   sender  (e2e/signals.send {signal, data?})               -> {run_id: string | null}

import { listen } from "./listen.mjs";

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

const { Inngest } = await import("inngest");
const { serve } = await import("inngest/node");

const APP_ID = "e2e-signals";
const SERVE_PATH = "/api/inngest";
const inngest = new Inngest({ id: APP_ID });

const waiter = inngest.createFunction(
  { id: "waiter", retries: 0, triggers: [{ event: "e2e/signals.wait" }] },
  async ({ event, step }) => {
    const got = await step.waitForSignal("wait-for-signal", {
      signal: String(event.data.signal),
      timeout: event.data.timeout ?? "60s",
      onConflict: event.data.conflict ?? "fail",
    });
    return { got };
  },
);

const sender = inngest.createFunction(
  { id: "sender", retries: 0, triggers: [{ event: "e2e/signals.send" }] },
  async ({ event, step }) => {
    const sent = await step.sendSignal("send-signal", {
      signal: String(event.data.signal),
      data: event.data.data,
    });
    return { run_id: sent.runId ?? null };
  },
);

const handler = serve({
  client: inngest,
  functions: [waiter, sender],
  servePath: SERVE_PATH,
});

listen(handler, { appId: APP_ID });
