// Stepwell e2e: send events with the official `inngest` JS SDK client (v4) and
// print what `inngest.send()` returned or threw, as one JSON line on stdout.
//
// Usage (STEPWELL_URL = the server's origin, dev mode, no keys):
//   node send.mjs partial <name>        one good event named <name>, then two
//                                       with an empty name (the SDK suite's
//                                       partial-send case)
//   node send.mjs sized <name> <bytes>  one event whose JSON, as the SDK sends
//                                       it, is exactly <bytes> long
//
// Output: {"ok": true, "ids": [...]} or {"ok": false, "error": "<message>"},
// plus "bytes" for `sized` (the event's JSON length as this script computed it).

const origin = (process.env.STEPWELL_URL || "").replace(/\/+$/, "");
if (!origin) {
  console.error("STEPWELL_URL is required");
  process.exit(2);
}

const { Inngest } = await import("inngest");
const inngest = new Inngest({ id: "e2e-node-send", isDev: true, baseUrl: origin });

// The SDK sends {...event, id, ts, data, meta} through JSON.stringify, which
// drops the undefined `id` and `meta`: with `ts` given, what goes over the wire
// is exactly JSON.stringify({name, data, ts}).
function sized(name, bytes) {
  const ts = Date.now();
  const overhead = Buffer.byteLength(JSON.stringify({ name, data: { blob: "" }, ts }));
  const event = { name, data: { blob: "x".repeat(bytes - overhead) }, ts };
  return { event, bytes: Buffer.byteLength(JSON.stringify(event)) };
}

async function send(events, extra = {}) {
  try {
    const { ids } = await inngest.send(events);
    return { ok: true, ids, ...extra };
  } catch (err) {
    return { ok: false, error: String(err && err.message ? err.message : err), ...extra };
  }
}

const [command, name, size] = process.argv.slice(2);
let result;
if (command === "partial") {
  result = await send([{ name, data: { n: 1 } }, { name: "" }, { name: "" }]);
} else if (command === "sized") {
  const { event, bytes } = sized(name, Number(size));
  result = await send([event], { bytes });
} else {
  console.error(`unknown command: ${command}`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(result)}\n`);
