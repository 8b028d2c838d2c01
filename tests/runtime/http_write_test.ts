import assert from "node:assert/strict";
import { type RawAnswer, writeRaw, writeResponse } from "../../runtime/api/http_write.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What one write call sends, as text without the date. */
async function sent(write: (w: { write(p: Uint8Array): Promise<number> }) => Promise<void>) {
  let out = "";
  await write({
    write: (p) => {
      out += dec.decode(p);
      return Promise.resolve(p.length);
    },
  });
  return out.replace(/\r\ndate: [^\r]*/, "");
}

Deno.test("writeRaw writes what writeResponse writes for the same answer, however they alternate", async () => {
  const json = [["content-type", "application/json"]] as const;
  const answers: [RawAnswer, { close: boolean; version: "1.0" | "1.1"; headOnly: boolean }][] = [
    [{ status: 202, headers: json, body: enc.encode('{"accepted":1}') }, {
      close: false,
      version: "1.1",
      headOnly: false,
    }],
    [{ status: 202, headers: json, body: enc.encode('{"accepted":1}') }, {
      close: true,
      version: "1.1",
      headOnly: false,
    }],
    [{ status: 202, headers: json, body: enc.encode('{"accepted":12}') }, {
      close: false,
      version: "1.1",
      headOnly: false,
    }],
    [{ status: 202, headers: json, body: enc.encode('{"accepted":1}') }, {
      close: false,
      version: "1.0",
      headOnly: false,
    }],
    [{
      status: 503,
      headers: [["content-type", "application/json"], ["retry-after", "5"]],
      body: enc.encode('{"error":{}}'),
    }, { close: false, version: "1.1", headOnly: false }],
    [{ status: 202, headers: json, body: enc.encode('{"accepted":1}') }, {
      close: false,
      version: "1.1",
      headOnly: true,
    }],
    [{ status: 204, headers: [], body: new Uint8Array(0) }, {
      close: false,
      version: "1.1",
      headOnly: false,
    }],
  ];
  for (const round of [1, 2]) {
    for (const [a, o] of answers) {
      const raw = await sent((w) => writeRaw(w, a, o));
      const res = new Response(a.status === 204 ? null : a.body.slice(), {
        status: a.status,
        headers: a.headers.map(([k, v]) => [k, v]),
      });
      const viaResponse = await sent((w) => writeResponse(w, res, o));
      if (o.headOnly) {
        // A HEAD answer built from a Response says the length only when the handler set it.
        assert.equal(
          raw,
          viaResponse.replace("\r\n\r\n", `\r\ncontent-length: ${a.body.length}\r\n\r\n`),
        );
      } else assert.equal(raw, viaResponse, `round ${round}: ${a.status} ${JSON.stringify(o)}`);
    }
  }
});
