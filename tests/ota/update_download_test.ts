/**
 * The update downloader against a real HTTP server on 127.0.0.1: resume with
 * Range across dropped connections and across "restarts" (a new call after
 * an abort), retries, length and digest enforcement, slow servers, the
 * free-disk check, and the token bucket's arithmetic.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  DiskSpaceError,
  download,
  TokenBucket,
  UpdateDownloadError,
  UpdateVerificationError,
} from "../../ota/mod.ts";

function assertEquals(actual: unknown, expected: unknown): void {
  assert.deepStrictEqual(actual, expected);
}

/** Awaits a rejection; checks its class and message part; returns the error. */
async function assertRejects(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  cls?: new (...args: any[]) => Error,
  includes?: string,
): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    if (cls) assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    if (includes) assert.ok(String((err as Error).message).includes(includes), String(err));
    return err;
  }
  throw new assert.AssertionError({ message: "expected a rejection" });
}

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

function payload(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  let x = 7;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

interface Behaviour {
  /** Close the connection after this many bytes of the body (first N requests). */
  cutAfter?: number;
  cutRequests?: number;
  /** Answer 503 to the first N requests. */
  fail503?: number;
  /** Ignore Range headers. */
  ignoreRange?: boolean;
  /** Send this many extra bytes. */
  extra?: number;
  /** Stall after this many bytes. */
  stallAfter?: number;
  /** Send the body at this many bytes per second (a tenth every 100 ms). */
  bytesPerSecond?: number;
}

function serve(data: Uint8Array, b: Behaviour = {}) {
  const ranges: (string | null)[] = [];
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    requests++;
    const range = req.headers.get("range");
    ranges.push(range);
    if (b.fail503 && requests <= b.fail503) return new Response("busy", { status: 503 });
    let start = 0;
    let status = 200;
    const headers = new Headers({ "content-type": "application/octet-stream" });
    const m = range && !b.ignoreRange ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      start = Number(m[1]);
      status = 206;
      headers.set("content-range", `bytes ${start}-${data.length - 1}/${data.length}`);
    }
    let body = data.subarray(start);
    if (b.extra) {
      const more = new Uint8Array(body.length + b.extra);
      more.set(body);
      body = more;
    }
    const cut = b.cutAfter !== undefined && requests <= (b.cutRequests ?? 1) ? b.cutAfter : -1;
    // The stall sits at an offset of the file, so resumed requests stall too.
    const stall = b.stallAfter === undefined ? undefined : Math.max(0, b.stallAfter - start);
    const stream = new ReadableStream<Uint8Array>({
      async start(ctrl) {
        let off = 0;
        const slice = b.bytesPerSecond ? Math.max(1, Math.round(b.bytesPerSecond / 10)) : 16384;
        while (off < body.length) {
          const end = Math.min(body.length, off + slice);
          if (cut >= 0 && end > cut) {
            ctrl.enqueue(body.slice(off, cut));
            ctrl.error(new Error("cut"));
            return;
          }
          if (stall !== undefined && end > stall) {
            if (stall > off) ctrl.enqueue(body.slice(off, stall));
            await new Promise((r) => setTimeout(r, 3000));
            ctrl.close();
            return;
          }
          ctrl.enqueue(body.slice(off, end));
          off = end;
          await new Promise((r) => setTimeout(r, b.bytesPerSecond ? 100 : 0));
        }
        ctrl.close();
      },
    });
    return new Response(stream, { status, headers });
  });
  const url = `http://127.0.0.1:${server.addr.port}/file`;
  return { server, url, ranges, count: () => requests };
}

Deno.test("download resumes with Range after the connection drops mid-body", async () => {
  const data = payload(300_000);
  const srv = serve(data, { cutAfter: 100_000, cutRequests: 2 });
  const dir = await Deno.makeTempDir();
  try {
    const res = await download({
      url: srv.url,
      dest: join(dir, "f"),
      length: data.length,
      sha256: await sha256(data),
      backoffMs: 1,
      syncEveryBytes: 32768,
    });
    assertEquals(res.attempts, 3);
    assertEquals(res.fetched, data.length);
    assertEquals(srv.ranges[0], null);
    assertEquals(srv.ranges[1], "bytes=100000-");
    assertEquals(await Deno.readFile(join(dir, "f")), data);
  } finally {
    await srv.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download resumes across a restart from the durable progress record", async () => {
  const data = payload(400_000);
  const sha = await sha256(data);
  const srv = serve(data);
  const dir = await Deno.makeTempDir();
  const dest = join(dir, "f");
  try {
    // First "process": rate-limited, aborted part-way (as a kill would stop it).
    const ctrl = new AbortController();
    let seen = 0;
    await assertRejects(() =>
      download({
        url: srv.url,
        dest,
        length: data.length,
        sha256: sha,
        bucket: new TokenBucket({ rate: 400_000, burst: 16384 }),
        syncEveryBytes: 16384,
        signal: ctrl.signal,
        onProgress: (p) => {
          seen = p.received;
          if (p.received >= 150_000) ctrl.abort(new Error("killed"));
        },
      })
    );
    assert(seen >= 150_000);
    const record = JSON.parse(await Deno.readTextFile(`${dest}.part.json`));
    assert(record.durable > 0 && record.durable <= seen, `durable ${record.durable}`);
    // Second "process": picks up from the record.
    const res = await download({ url: srv.url, dest, length: data.length, sha256: sha });
    assertEquals(res.resumedFrom, record.durable);
    assertEquals(res.fetched, data.length - record.durable);
    assertEquals(srv.ranges.at(-1), `bytes=${record.durable}-`);
    assertEquals(await Deno.readFile(dest), data);
    // Done files are not fetched again.
    const again = await download({ url: srv.url, dest, length: data.length, sha256: sha });
    assertEquals(again.fetched, 0);
  } finally {
    await srv.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download drops bytes after the last fsync (torn tail after power loss)", async () => {
  const data = payload(100_000);
  const sha = await sha256(data);
  const srv = serve(data);
  const dir = await Deno.makeTempDir();
  const dest = join(dir, "f");
  try {
    // A part file whose tail is garbage beyond the durable mark.
    const part = new Uint8Array(60_000);
    part.set(data.subarray(0, 40_000));
    await Deno.writeFile(`${dest}.part`, part);
    await Deno.writeTextFile(
      `${dest}.part.json`,
      JSON.stringify({ url: srv.url, length: data.length, sha256: sha, durable: 40_000 }),
    );
    const res = await download({ url: srv.url, dest, length: data.length, sha256: sha });
    assertEquals(res.resumedFrom, 40_000);
    assertEquals(await Deno.readFile(dest), data);
  } finally {
    await srv.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download retries 503 with back-off, restarts when Range is ignored", async () => {
  const data = payload(50_000);
  const srv = serve(data, { fail503: 2, ignoreRange: true, cutAfter: 20_000, cutRequests: 3 });
  const dir = await Deno.makeTempDir();
  try {
    const res = await download({
      url: srv.url,
      dest: join(dir, "f"),
      length: data.length,
      sha256: await sha256(data),
      backoffMs: 1,
      syncEveryBytes: 4096,
    });
    assertEquals(srv.count(), 4);
    assertEquals(res.attempts, 4);
    assertEquals(await Deno.readFile(join(dir, "f")), data);
  } finally {
    await srv.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download refuses endless data, a wrong digest, a stalled server, a full disk", async () => {
  const data = payload(50_000);
  const sha = await sha256(data);
  const dir = await Deno.makeTempDir();
  const endless = serve(data, { extra: 100_000 });
  const stalled = serve(data, { stallAfter: 10_000 });
  try {
    const e1 = await assertRejects(() =>
      download({ url: endless.url, dest: join(dir, "a"), length: data.length, sha256: sha })
    );
    // More bytes than the signed length: not what was signed, not a network hiccup.
    assert(e1 instanceof UpdateVerificationError);
    assert(/than listed/.test((e1 as Error).message), (e1 as Error).message);

    const wrong = sha.replace(/^./, sha[0] === "0" ? "1" : "0");
    const e2 = await assertRejects(
      () =>
        download({
          url: endless.url,
          dest: join(dir, "b"),
          length: 150_000,
          sha256: wrong,
          target: "releases/x/1.0.0/edged",
        }),
      UpdateVerificationError,
      "lists 150000 bytes",
    ) as UpdateVerificationError;
    // The error names the target and both digests; the bytes are not kept for a resume.
    assertEquals(e2.target, "releases/x/1.0.0/edged");
    assertEquals(e2.expected, { sha256: wrong, length: 150_000 });
    const sent = new Uint8Array(150_000);
    sent.set(data);
    assertEquals(e2.actual, { sha256: await sha256(sent), length: 150_000 });
    assert(e2.message.includes(wrong) && e2.message.includes(e2.actual.sha256!), e2.message);
    assert(!(e2 instanceof UpdateDownloadError), "a verification failure is not a network one");
    await assertRejects(() => Deno.stat(join(dir, "b")), Deno.errors.NotFound);
    await assertRejects(() => Deno.stat(join(dir, "b.part")), Deno.errors.NotFound);

    await assertRejects(
      () =>
        download({
          url: stalled.url,
          dest: join(dir, "c"),
          length: data.length,
          sha256: sha,
          idleTimeoutMs: 300,
          retries: 1,
          backoffMs: 1,
        }),
      UpdateDownloadError,
      "no data for 300 ms",
    );

    await assertRejects(
      () =>
        download({
          url: endless.url,
          dest: join(dir, "d"),
          length: data.length,
          sha256: sha,
          reserveBytes: Number.MAX_SAFE_INTEGER / 2,
        }),
      DiskSpaceError,
    );
  } finally {
    await endless.server.shutdown();
    await stalled.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download gives up at a deadline scaled to the size, and resumes afterwards", async () => {
  // Issue 13 row M3: a server sending 600 bytes per second never trips the
  // idle timeout; the deadline (idle timeout + size at the minimum rate) does.
  const data = payload(2400);
  const sha = await sha256(data);
  const slow = serve(data, { bytesPerSecond: 600 });
  const dir = await Deno.makeTempDir();
  const dest = join(dir, "f");
  try {
    const started = performance.now();
    await assertRejects(
      () =>
        download({
          url: slow.url,
          dest,
          length: data.length,
          sha256: sha,
          idleTimeoutMs: 500,
          minBytesPerSecond: 2400, // deadline: 0.5 s + 2400 B at 2400 B/s = 1.5 s
          syncEveryBytes: 60,
          backoffMs: 1,
        }),
      UpdateDownloadError,
      "not complete within 1.5 s",
    );
    const took = performance.now() - started;
    const { durable } = JSON.parse(await Deno.readTextFile(`${dest}.part.json`));
    assert(durable > 0 && durable < data.length, `${durable} bytes kept after ${took} ms`);
    assertEquals(slow.count(), 1); // the deadline ends the call: no retry
    // The next call resumes from the kept bytes.
    const fast = serve(data);
    try {
      const res = await download({ url: fast.url, dest, length: data.length, sha256: sha });
      assertEquals(res.resumedFrom, durable);
      assertEquals(fast.ranges, [`bytes=${durable}-`]);
      assertEquals(await Deno.readFile(dest), data);
    } finally {
      await fast.server.shutdown();
    }
  } finally {
    await slow.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("token bucket: waits exactly for the bytes beyond the burst", async () => {
  let now = 0;
  const sleeps: number[] = [];
  const bucket = new TokenBucket({
    rate: 1000,
    burst: 500,
    now: () => now,
    sleep: (ms) => {
      sleeps.push(ms);
      now += ms;
      return Promise.resolve();
    },
  });
  await bucket.take(500); // the burst passes at once
  assertEquals(sleeps, []);
  await bucket.take(250); // 250 bytes at 1000 B/s
  assertEquals(sleeps, [250]);
  await bucket.take(2000); // larger than the burst: in burst-sized parts
  assertEquals(sleeps.slice(1), [500, 500, 500, 500]);
  assertEquals(now, 2250); // 2750 bytes - 500 burst at 1000 B/s
  now += 10_000; // idle: refills only up to the burst
  await bucket.take(600);
  assertEquals(sleeps.at(-1), 100);
  const unlimited = new TokenBucket({ rate: 0 });
  await unlimited.take(1e12);
});
