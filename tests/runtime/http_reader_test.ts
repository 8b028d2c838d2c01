import assert from "node:assert/strict";
import { type ByteReader, ConnReader } from "../../runtime/api/http_reader.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A connection that delivers `text` in reads of the given sizes (then the rest, then the end). */
function conn(text: string, sizes: number[]): ByteReader {
  const bytes = enc.encode(text);
  let at = 0;
  let turn = 0;
  return {
    read(p) {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, sizes[turn++] ?? bytes.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

/** Reads heads (and their `Content-Length` bodies) as the server does; returns them in order. */
async function heads(reader: ConnReader): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    let searched = 0;
    let head: Uint8Array | null = null;
    for (;;) {
      // Empty lines before a request line are ignored (RFC 9112 §2.2), also split across reads.
      searched = Math.max(0, searched - reader.skipEmptyLines());
      head = reader.takeHead(searched);
      if (head) break;
      searched = reader.buffered;
      if (!await reader.fill()) return out;
    }
    const text = dec.decode(head);
    out.push(text);
    const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
    let body = "";
    while (body.length < length) {
      const chunk = await reader.readChunk(length - body.length);
      if (chunk === null) throw new Error("body cut short");
      body += dec.decode(chunk);
    }
    out.push(body);
  }
}

const TWO = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nx\r\n\r" +
  "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
const WANT = [
  "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4",
  "x\r\n\r",
  "GET /b HTTP/1.1\r\nHost: h",
  "",
];

Deno.test("ConnReader finds each head however the bytes are split across reads", async () => {
  assert.deepEqual(await heads(new ConnReader(conn(TWO, []), 1024)), WANT, "in one read");
  assert.deepEqual(
    await heads(new ConnReader(conn("\r\n\r\n" + TWO, []), 1024)),
    WANT,
    "after empty lines",
  );
  assert.deepEqual(
    await heads(new ConnReader(conn(TWO, Array(TWO.length).fill(1)), 1024)),
    WANT,
    "a byte at a time",
  );
  // Every split point, so the empty line is cut after each of its bytes.
  for (let cut = 1; cut < TWO.length; cut++) {
    assert.deepEqual(
      await heads(new ConnReader(conn(TWO, [cut]), 1024)),
      WANT,
      `split at ${cut}`,
    );
  }
});

Deno.test("ConnReader: a head longer than the buffer fills it and is not taken", async () => {
  const reader = new ConnReader(conn(`GET / HTTP/1.1\r\nX: ${"a".repeat(100)}\r\n\r\n`, []), 64);
  while (!reader.full) assert.ok(await reader.fill());
  assert.equal(reader.takeHead(), null);
});
