// Stepwell e2e app: run and step metadata of the official `inngest` JS SDK (v4).
//
// Start: STEPWELL_URL=<server origin> node tests/e2e/apps/node_app/metadata.mjs --port 3942
// App id `e2e-metadata`, serve path `/api/inngest`; event `e2e/metadata` starts `annotated`.
//
// The SDK's metadata API is experimental: `metadataMiddleware()` enables it.  Inside a
// `step.run` an update rides on the step's op; outside a step the SDK posts it to
// `POST /v1/runs/{runId}/metadata`.

import { listen } from "./listen.mjs";

const origin = (process.env.STEPWELL_URL || "").replace(/\/+$/, "");
if (origin) process.env.INNGEST_DEV = origin;

const { Inngest } = await import("inngest");
const { metadataMiddleware } = await import("inngest/experimental");
const { serve } = await import("inngest/node");

const inngest = new Inngest({
  id: "e2e-metadata",
  checkpointing: false,
  middleware: [metadataMiddleware()],
});

const annotated = inngest.createFunction(
  { id: "annotated", retries: 1, triggers: [{ event: "e2e/metadata" }] },
  async ({ event, step, attempt }) => {
    // Inside a step: rides on the step's op, scoped to the step.
    const rows = await step.run("work", async () => {
      await inngest.metadata.set({ rows: 3, source: event.data.source }, "import");
      return 3;
    });
    // A failed attempt's metadata stays with that attempt; the retry's with the step.
    await step.run("flaky", async () => {
      await inngest.metadata.set({ try: attempt }, "tries");
      if (attempt === 0) throw new Error("the first try fails");
      return "ok";
    });
    // step.metadata(): a step of its own whose update is scoped to the run.
    await step.metadata("note").set({ stage: "done" }, "progress");
    // Outside any step (after the last one, so once): sent through the REST API.
    await inngest.metadata.set({ rows }, "summary");
    await inngest.metadata.step("work").update({ checked: true }, "review");
    return { rows };
  },
);

const handler = serve({
  client: inngest,
  functions: [annotated],
  servePath: "/api/inngest",
});

listen(handler, { appId: "e2e-metadata" });
