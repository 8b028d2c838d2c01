/**
 * Issue 13, H1 replayed: floods of connections that send a request line and
 * one header but never the blank line, against edged under a low descriptor
 * limit (`prlimit --nofile`), so they stay fast.
 */
import assert from "node:assert/strict";
import { startEdged } from "../_helpers/edged.ts";

const enc = new TextEncoder();
const HALF_REQUEST = enc.encode("GET / HTTP/1.1\r\nHost: flood\r\n");

/** One `GET /healthz` on a fresh connection; the status, or the error. */
async function probe(port: number, timeoutMs = 5000): Promise<string> {
  let conn: Deno.Conn | undefined;
  const timer = setTimeout(() => conn?.close(), timeoutMs);
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(
      enc.encode("GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"),
    );
    const buf = new Uint8Array(256);
    const n = await conn.read(buf);
    return n === null ? "closed" : new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0];
  } catch (err) {
    return `error: ${(err as Error).message}`;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
  }
}

/** Opens `n` half-sent requests, probing /healthz every `every` connections. */
async function wave(port: number, n: number, every: number) {
  const conns: Deno.Conn[] = [];
  const probes: string[] = [];
  let failed = 0;
  for (let i = 0; i < n; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(c);
      await c.write(HALF_REQUEST).catch(() => failed++);
    } catch {
      failed++; // the listen queue overflowed while edged backed off
    }
    if (i % every === every - 1) probes.push(await probe(port));
  }
  return { conns, probes, failed };
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

Deno.test("H1: floods of half-sent requests neither end edged nor keep /healthz out", async () => {
  const edged = await startEdged({
    wrapper: ["prlimit", "--nofile=256"],
    env: { EDGED_HTTP_HEADER_TIMEOUT_S: "2" },
  });
  const port = Number(new URL(edged.url).port);
  const opened: Deno.Conn[] = [];
  try {
    for (let w = 0; w < 2; w++) {
      const { conns, probes } = await wave(port, 1000, 100);
      opened.push(...conns);
      assert.deepEqual(probes, Array(10).fill("HTTP/1.1 200 OK"), `wave ${w + 1}`);
    }
    assert.equal(await probe(port), "HTTP/1.1 200 OK", "right after the flood");
    const text = await (await fetch(edged.url + "/metrics")).text();
    const cap = metric(text, "edged_http_connections_max");
    assert.equal(cap, 256 - 128, "the cap fits the descriptor limit, less the reserve");
    assert.ok(metric(text, "edged_http_connections") <= cap);
    assert.ok(metric(text, 'edged_http_connections_closed_total{reason="evicted"}') > 1000);
    // The half-sent requests that were not replaced are closed by the header timeout.
    const t0 = Date.now();
    let open = Infinity;
    while (Date.now() - t0 < 8000) {
      const m = await (await fetch(edged.url + "/metrics")).text();
      open = metric(m, "edged_http_connections");
      if (open <= 1) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(open <= 1, `${open} connections still open 8 s after the flood`);
    assert.ok(edged.lines.some((l) => l.includes("open-file limit")), "the cap is logged");
  } finally {
    for (const c of opened) {
      try {
        c.close();
      } catch { /* closed by edged */ }
    }
    assert.equal(await edged.stop(), 0, "edged is alive and stops cleanly");
  }
});

Deno.test("H1: out of descriptors, the server backs off and accepts again", async () => {
  // The bare server with a cap far above its descriptor limit: accept() fails
  // with EMFILE, which must neither end the process nor stop the server.
  const child = new Deno.Command("prlimit", {
    args: [
      "--nofile=64",
      Deno.execPath(),
      "run",
      "--allow-net",
      new URL("./_flood_server.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const opened: Deno.Conn[] = [];
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!/PORT (\d+)/.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the server did not start");
      out += value;
    }
    const port = Number(/PORT (\d+)/.exec(out)![1]);
    const { conns } = await wave(port, 300, 300);
    opened.push(...conns);
    for (const c of opened.splice(0)) c.close();
    let status = "";
    for (let i = 0; i < 20 && status !== "HTTP/1.1 200 OK"; i++) {
      status = await probe(port, 2000);
    }
    assert.equal(status, "HTTP/1.1 200 OK", "the server accepts again after the flood");
    const res = await fetch(`http://127.0.0.1:${port}/stats`);
    const stats = await res.json();
    assert.ok(stats.acceptErrors > 0, `accept errors were met: ${JSON.stringify(stats)}`);
    reader.releaseLock();
  } finally {
    for (const c of opened) c.close();
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
});
