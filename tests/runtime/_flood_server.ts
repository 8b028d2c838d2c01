/**
 * Test fixture of flood_test.ts: the API's HTTP server with a connection cap
 * far above the process's descriptor limit, answering `/stats` with its
 * counters. Prints `PORT n` once listening.
 */
import { serveHttp } from "../../runtime/mod.ts";

// Deno sets up its signal thread on the first listener and cannot without a
// descriptor to spare: edged registers its listeners before it listens, and so
// does this fixture.
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));

const server = serveHttp(
  {
    hostname: "127.0.0.1",
    port: 0,
    maxConnections: 10_000,
    headerTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    requestTimeoutMs: 60_000,
  },
  (req) =>
    new URL(req.url).pathname === "/stats" ? Response.json(server.stats) : new Response("ok"),
);
console.log(`PORT ${server.addr.port}`);
