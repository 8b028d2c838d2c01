/**
 * The ingest anchor: a bare `Deno.serve` handler that only parses the JSON
 * body and answers 202, with no validation and no durability. It is the
 * ceiling of HTTP + JSON on this machine.
 *
 * @module
 */
const server = Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`PORT ${port}`),
}, async (req) => {
  const body = await req.json();
  const n = Array.isArray(body) ? body.length : 1;
  return new Response(JSON.stringify({ accepted: n }), {
    status: 202,
    headers: { "content-type": "application/json" },
  });
});
await server.finished;
