// Stepwell e2e app: `defer()` and `createDefer` of the official `inngest` JS SDK (v4).
//
// Start: STEPWELL_URL=<server origin> node tests/e2e/apps/node_app/defers.mjs --port 3941
// App id `e2e-defers`, serve path `/api/inngest`.

import { listen } from "./listen.mjs";

const origin = (process.env.STEPWELL_URL || "").replace(/\/+$/, "");
if (origin) process.env.INNGEST_DEV = origin;

const { Inngest } = await import("inngest");
const { createDefer } = await import("inngest/experimental");
const { serve } = await import("inngest/node");

const inngest = new Inngest({ id: "e2e-defers", checkpointing: false });

// The companion function: runs once per defer, after the parent run has ended.
const followUp = createDefer(inngest, { id: "follow-up" }, async ({ event, parents }) => {
  return { got: event.data, parent: parents[0] };
});

const parent = inngest.createFunction(
  { id: "parent", retries: 0, triggers: [{ event: "e2e/defer.parent" }] },
  async ({ event, step, defer }) => {
    defer("kept", { function: followUp, data: { to: event.data.to } });
    const dropped = defer("dropped", { function: followUp, data: { to: "nobody" } });
    dropped.abort();
    // Not an object: the server rejects this defer and the run goes on without it.
    defer("rejected", { function: followUp, data: 5 });
    const n = await step.run("work", () => 41 + 1);
    if (event.data.fail) throw new Error("parent fails after deferring");
    return { n };
  },
);

const handler = serve({
  client: inngest,
  functions: [parent, followUp],
  servePath: "/api/inngest",
});

listen(handler, { appId: "e2e-defers" });
