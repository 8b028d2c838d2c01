/**
 * Issue 13, M1: every route reads its body through a streaming limit, chunked
 * or not; a refused upload costs at most a small multiple of the limit.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { bodyLimit, createApp, Metrics } from "../../runtime/mod.ts";
import { startEdged } from "../_helpers/edged.ts";

const MiB = 1024 * 1024;
const TOKEN = "t".repeat(32);

/** A body of `total` bytes in 64 KiB chunks, counting what the reader pulled. */
function source(total: number, pulled: { bytes: number }): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(65536).fill(0x61);
  return new ReadableStream({
    pull(controller) {
      if (pulled.bytes >= total) return controller.close();
      pulled.bytes += chunk.length;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
}

Deno.test("body limits: the app's default and a route's own, counted as the body streams", async () => {
  const seen: Record<string, number> = {};
  const routes = new Hono();
  routes.post("/default", async (c) => {
    const text = await c.req.text().catch(() => "");
    seen.default = text.length;
    return c.json({ ok: true });
  });
  routes.put("/big", bodyLimit(4 * MiB), async (c) => {
    seen.big = (await c.req.arrayBuffer()).byteLength;
    return c.json({ ok: true });
  });
  routes.post("/form", async (c) => {
    // A parser that calls any failure malformed: the limit still answers 413.
    try {
      await c.req.formData();
    } catch {
      return c.json({ error: { code: "bad_request" } }, 400);
    }
    return c.json({ ok: true });
  });
  const app = createApp({
    token: TOKEN,
    metrics: new Metrics(),
    notReady: () => [],
    routes: [{ path: "/api/v1/t", app: routes }],
    dashboard: () => new Response(""),
    bodyLimitBytes: MiB,
  });
  const send = (path: string, method: string, body: BodyInit, headers: HeadersInit = {}) =>
    app.request(`/api/v1/t${path}`, {
      method,
      body,
      headers: { authorization: `Bearer ${TOKEN}`, ...headers },
      // @ts-ignore: duplex is required for stream bodies
      duplex: "half",
    });

  const pulled = { bytes: 0 };
  const res = await send("/default", "POST", source(300 * MiB, pulled));
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error.code, "body_too_large");
  assert.ok(pulled.bytes <= MiB + 2 * 65536, `read ${pulled.bytes} bytes of a 300 MiB body`);

  assert.equal((await send("/big", "PUT", new Uint8Array(3 * MiB))).status, 200);
  assert.equal(seen.big, 3 * MiB, "a route may take more than the default");
  const over = { bytes: 0 };
  assert.equal((await send("/big", "PUT", source(300 * MiB, over))).status, 413);
  assert.ok(over.bytes <= 4 * MiB + 2 * 65536, `read ${over.bytes} bytes`);

  const declared = { bytes: 0 };
  const early = await send("/big", "PUT", source(300 * MiB, declared), {
    "content-length": String(300 * MiB),
  });
  assert.equal(early.status, 413);
  assert.equal(declared.bytes, 0, "a declared length over the limit is refused before reading");

  const form = await send("/form", "POST", source(300 * MiB, { bytes: 0 }), {
    "content-type": "multipart/form-data; boundary=x",
  });
  assert.equal(form.status, 413);
});

const enc = new TextEncoder();

function rssKiB(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)![1]);
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
}

/**
 * Sends a head, then body bytes until the answer comes or `total` were sent;
 * returns the status line and how many body bytes went out.
 */
async function upload(
  port: number,
  head: string,
  prefix: string,
  total: number,
  chunked: boolean,
): Promise<{ status: string; sent: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    let answered = false;
    const answer = (async () => {
      const buf = new Uint8Array(4096);
      let text = "";
      while (!text.includes("\r\n")) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      answered = true;
      return text.split("\r\n")[0];
    })();
    const writeAll = async (b: Uint8Array) => {
      for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
    };
    await writeAll(enc.encode(head));
    const data = new Uint8Array(65536).fill(0x61);
    const frame = (b: Uint8Array) =>
      chunked ? new Uint8Array([...enc.encode(b.length.toString(16) + "\r\n"), ...b, 13, 10]) : b;
    let sent = 0;
    try {
      await writeAll(frame(enc.encode(prefix)));
      const framed = frame(data);
      while (!answered && sent < total) {
        await writeAll(framed);
        sent += data.length;
      }
    } catch { /* the server closed the connection after answering */ }
    return { status: await answer, sent };
  } finally {
    conn.close();
  }
}

Deno.test("M1: 300 MB bodies to messages, modules, models and ingest get 413 without filling memory", async () => {
  const edged = await startEdged({
    env: {
      EDGED_MODULES_PRELOAD: new URL("../../examples/modules/threshold-alert-c", import.meta.url)
        .pathname,
    },
  });
  const port = Number(new URL(edged.url).port);
  const auth = `Authorization: Bearer ${edged.token}\r\nHost: t\r\n`;
  const total = 300 * 1000 * 1000;
  try {
    const before = rssKiB(edged.child.pid);
    const cases = [
      {
        what: "POST messages, Content-Length",
        head: `POST /api/v1/modules/threshold-alert/messages HTTP/1.1\r\n${auth}` +
          `Content-Type: application/json\r\nContent-Length: ${total}\r\n\r\n`,
        prefix: '{"topic":"t","payload":"',
        chunked: false,
        limit: MiB,
      },
      {
        what: "PUT module, chunked",
        head: `PUT /api/v1/modules/big HTTP/1.1\r\n${auth}` +
          "Content-Type: multipart/form-data; boundary=xx\r\nTransfer-Encoding: chunked\r\n\r\n",
        prefix: '--xx\r\nContent-Disposition: form-data; name="module"; filename="m.wasm"\r\n\r\n',
        chunked: true,
        limit: 33 * MiB,
      },
      {
        what: "PUT model, Content-Length",
        head: `PUT /api/v1/models/big HTTP/1.1\r\n${auth}` +
          `Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: ${total}\r\n\r\n`,
        prefix: '--xx\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n',
        chunked: false,
        limit: 256 * MiB,
      },
      {
        what: "POST data, chunked",
        head: `POST /api/v1/data HTTP/1.1\r\n${auth}` +
          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        prefix: '{"device_id":"p","value":1,"pad":"',
        chunked: true,
        limit: MiB,
      },
    ];
    for (const c of cases) {
      const { status, sent } = await upload(port, c.head, c.prefix, total, c.chunked);
      assert.equal(status, "HTTP/1.1 413 Content Too Large", c.what);
      // What the kernel's socket buffers hold on both sides comes on top of the limit.
      assert.ok(sent < c.limit + 32 * MiB, `${c.what}: ${sent} bytes went out before the 413`);
      const h = await fetch(edged.url + "/healthz");
      assert.equal(h.status, 200, `alive after ${c.what}`);
      await h.body?.cancel();
    }
    const after = rssKiB(edged.child.pid);
    const grew = (after.peak - before.rss) / 1024;
    assert.ok(
      grew < 4 * 33,
      `peak RSS grew by ${grew.toFixed(0)} MiB (limit of the largest: 33 MiB)`,
    );
    console.log(
      `RSS ${(before.rss / 1024).toFixed(0)} MiB before, peak ${(after.peak / 1024).toFixed(0)}` +
        ` MiB, ${(after.rss / 1024).toFixed(0)} MiB after`,
    );
  } finally {
    assert.equal(await edged.stop(), 0);
  }
});
