// Stepwell e2e app: official `inngest` JS SDK (v4) served by `inngest/node` with
// `streaming: true`: each call is answered 201 at once and its body streamed.
//
// Start: STEPWELL_URL=<server origin> node tests/e2e/apps/node_app/streaming.mjs --port 3940
// App id `e2e-stream-node`, serve path `/api/inngest`.

import { listen } from "./listen.mjs";

const origin = (process.env.STEPWELL_URL || "").replace(/\/+$/, "");
if (origin) process.env.INNGEST_DEV = origin;

const { Inngest } = await import("inngest");
const { serve } = await import("inngest/node");

const inngest = new Inngest({ id: "e2e-stream-node", checkpointing: false });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const slowSteps = inngest.createFunction(
  { id: "slow-steps", retries: 2, triggers: [{ event: "e2e/stream.node" }] },
  async ({ event, step, attempt }) => {
    const a = await step.run("slow", async () => {
      await sleep(Number(event.data?.seconds ?? 3.5) * 1000);
      return 1;
    });
    const b = await step.run("fail-once", async () => {
      if (attempt === 0) throw new Error("first attempt fails");
      return attempt; // the attempt that succeeded: 1
    });
    return { a, b };
  },
);

const handler = serve({
  client: inngest,
  functions: [slowSteps],
  servePath: "/api/inngest",
  streaming: true,
});

listen(handler, { appId: "e2e-stream-node" });
