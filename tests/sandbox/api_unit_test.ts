/**
 * Error paths of the modules API over a real ModuleHost, mounted in the
 * runtime's HTTP app as edged mounts it (its one error handler answers).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createApp, Metrics } from "../../runtime/mod.ts";
import { type ModuleHost, modulesApi } from "../../sandbox/mod.ts";
import { enc, env, manifest, module } from "./_helpers.ts";

const TOKEN = "t".repeat(32);

/** The modules API as edged serves it; `request` takes paths below `/api/v1/modules`. */
function served(host: ModuleHost) {
  const app = createApp({
    token: TOKEN,
    metrics: new Metrics(),
    notReady: () => [],
    routes: [{ path: "/api/v1/modules", app: modulesApi(host) }],
    dashboard: () => new Response(""),
    bodyLimitBytes: 1024 * 1024,
  });
  return {
    request: (path: string, init: RequestInit = {}) =>
      app.request(`/api/v1/modules${path}`, {
        ...init,
        headers: { ...init.headers, authorization: `Bearer ${TOKEN}` },
      }),
  };
}

const post = (app: ReturnType<typeof served>, name: string, body: string) =>
  app.request(`/${name}/messages`, {
    method: "POST",
    body,
    headers: { "content-type": "application/json" },
  });

Deno.test("messages: 400 on a bad body, 413 over max_payload_bytes, 409 while quarantined", async () => {
  const e = await env({ faultLimit: 1, quarantineMs: 60_000 });
  try {
    await e.host.install(
      manifest("m", { limits: { max_payload_bytes: 16 } }),
      await module(`(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
        (if (i32.gt_u (local.get 3) (i32.const 8)) (then unreachable)) (i32.const 0))`),
    );
    const app = served(e.host);
    assert.equal((await post(app, "m", "{nope")).status, 400);
    assert.equal((await post(app, "m", JSON.stringify({ payload: 1 }))).status, 400);
    const big = await post(app, "m", JSON.stringify({ topic: "t", payload: "x".repeat(100) }));
    assert.equal(big.status, 413);
    assert.equal((await big.json()).error.code, "payload_too_large");
    const trap = await (await post(app, "m", JSON.stringify({ topic: "t", payload: "123456789" })))
      .json();
    assert.equal(trap.status, null);
    assert.equal(trap.error.code, "trap");
    const q = await post(app, "m", JSON.stringify({ topic: "t", payload: 1 }));
    assert.equal(q.status, 409);
    assert.equal((await q.json()).error.code, "module_quarantined");
    assert.equal((await app.request("/m", { method: "PUT", body: "x" })).status, 400);
  } finally {
    await e.dispose();
  }
});

Deno.test("messages sent at once go a few at a time: past the fault limit the rest are refused, not run", async () => {
  const e = await env({ faultLimit: 3, quarantineMs: 60_000 });
  try {
    await e.host.install(
      manifest("f"),
      await module(`(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
        unreachable)`),
    );
    const app = served(e.host);
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => post(app, "f", JSON.stringify({ topic: "t", payload: 1 }))),
    );
    const codes = await Promise.all(answers.map(async (r) => (await r.json()).error.code));
    // The three that reach the fault limit, and the three more already at the Worker then (a
    // module has four slots there), ran and trapped; the quarantine refused the other 14 before
    // they ran (without the slots, all 20 ran).
    assert.deepEqual(codes.filter((c) => c === "trap").length, 6, codes.join());
    assert.deepEqual(codes.filter((c) => c === "module_quarantined").length, 14, codes.join());
    assert.equal(e.host.status("f").messages_in, 6);
  } finally {
    await e.dispose();
  }
});

Deno.test("an install body of many parts is refused before it is parsed", async () => {
  const e = await env();
  try {
    const app = served(e.host);
    const part = '--B\r\nContent-Disposition: form-data; name="x"; filename="a"\r\n\r\n\r\n';
    const many = await app.request("/m", {
      method: "PUT",
      body: part.repeat(10_000) + "--B--\r\n",
      headers: { "content-type": "multipart/form-data; boundary=B" },
    });
    assert.equal(many.status, 400);
    assert.match((await many.json()).error.message, /at most 8 parts/);
    // A body of few parts is parsed as before: here it lacks the manifest.
    const few = await app.request("/m", {
      method: "PUT",
      body: part.repeat(3) + "--B--\r\n",
      headers: { "content-type": 'multipart/form-data; boundary="B"' },
    });
    assert.equal(few.status, 400);
    assert.match((await few.json()).error.message, /part manifest is missing/);
    assert.deepEqual(e.host.names(), []);
  } finally {
    await e.dispose();
  }
});

Deno.test("a module corrupted on disk comes back as failed, visible and removable", async () => {
  const e = await env();
  const dataDir = e.dataDir;
  try {
    await e.host.install(
      manifest("c"),
      await module(
        `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0))`,
      ),
    );
    const sha = e.host.status("c").sha256;
    await e.close();
    const wasm = join(dataDir, "modules", "c", sha, "module.wasm");
    const bytes = await Deno.readFile(wasm);
    bytes[bytes.length - 2] ^= 0xff;
    await Deno.writeFile(wasm, bytes);

    const again = await env({ dataDir });
    try {
      const s = again.host.status("c");
      assert.equal(s.state, "failed");
      assert.equal(s.last_error?.kind, "load");
      assert.match(s.last_error!.message, /sha256: manifest says/);
      const app = served(again.host);
      const r = await post(app, "c", JSON.stringify({ topic: "t", payload: 1 }));
      assert.equal(r.status, 409);
      assert.equal((await r.json()).error.code, "module_failed");
      assert.equal((await app.request("/c", { method: "DELETE" })).status, 204);
      assert.deepEqual(again.host.names(), []);
      assert.equal(enc("ok").length, 2);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
