/**
 * Raw HTTP/1.1 exchanges for tests of the server's framing: bytes as written,
 * answers as read, without a client library in between.
 *
 * @module
 */
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Sends raw bytes on a fresh connection (pieces of a list 50 ms apart, each its
 * own read for the server) and reads until the server closes it (or `ms`).
 */
export async function exchange(
  port: number,
  raw: string | Uint8Array | string[],
  ms = 3000,
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    const pieces = Array.isArray(raw) ? raw : [raw];
    for (const [i, piece] of pieces.entries()) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      await conn.write(typeof piece === "string" ? enc.encode(piece) : piece);
    }
    let out = "";
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      out += dec.decode(buf.subarray(0, n));
    }
    return out;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}
