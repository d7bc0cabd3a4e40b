// Shared by the e2e Node apps: serve an SDK handler on a plain node:http server.
//
// `listen(handler, { appId })` answers the SDK at /api/inngest and a health check at /healthz,
// on --port/--host (or PORT/HOST), and stops on SIGTERM/SIGINT.

import http from "node:http";
import { parseArgs } from "node:util";

export const SERVE_PATH = "/api/inngest";

export function listen(handler, { appId, defaultPort = 3940 } = {}) {
  const { values } = parseArgs({
    options: { port: { type: "string" }, host: { type: "string" } },
    strict: false,
  });
  const port = Number(values.port ?? process.env.PORT ?? defaultPort);
  const host = values.host ?? process.env.HOST ?? "127.0.0.1";
  const server = http.createServer((req, res) => {
    const path = (req.url || "").split("?")[0];
    if (path === SERVE_PATH) return handler(req, res);
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ ok: true, app_id: appId }));
    }
    res.writeHead(404).end();
  });
  server.listen(port, host, () => {
    console.log(`${appId} listening on http://${host}:${port}${SERVE_PATH}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  return server;
}
