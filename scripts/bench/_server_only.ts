/**
 * edged's HTTP server alone (`serveHttp`, with the connection cap and
 * timeouts of edged's defaults) under a fast route that only parses the JSON
 * body and answers 202, as the anchor does: no auth, no validation, no
 * durability. Beside the anchor it says what the server itself costs, apart
 * from what edged does behind it.
 *
 * @module
 */
import { serveHttp } from "../../runtime/mod.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const HEADERS = [["content-type", "application/json"]] as const;
// The answer by count, built once, as edged's ingest route builds it.
const answers: Uint8Array[] = [];

serveHttp({
  hostname: "127.0.0.1",
  port: 0,
  maxConnections: 1024,
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  onListen: ({ port }) => console.log(`PORT ${port}`),
  fast: (_head, body) => {
    const parsed = JSON.parse(decoder.decode(body ?? undefined));
    const n = Array.isArray(parsed) ? parsed.length : 1;
    const answer = answers[n] ??= encoder.encode(JSON.stringify({ accepted: n }));
    return Promise.resolve({ status: 202, headers: HEADERS, body: answer });
  },
}, () => new Response(null, { status: 404 }));
