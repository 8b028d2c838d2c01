/**
 * Start-up with durable subscriptions, on a real edged process: an installed
 * module that is still loading answers 503 with Retry-After (not 404), and
 * the readings ingested meanwhile reach it once it has loaded, after the ones
 * it had handled before the restart and without them.
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../../lib/mod.ts";
import { type EdgedProcess, postJson, startEdged } from "../_helpers/edged.ts";
import { wat } from "../sandbox/_helpers.ts";

/** edge_init spins ~SPIN iterations (a slow load); each message counts in kv and publishes. */
const SLOW_INIT = (spin: number) =>
  `(module
  (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "n")
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_init") (result i32) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const ${spin}))))
    (i32.const 0))
  (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $n i32)
    (if (i32.ne (call $get (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)) (i32.const 4))
      (then (i32.store (i32.const 16) (i32.const 0))))
    (local.set $n (i32.add (i32.load (i32.const 16)) (i32.const 1)))
    (i32.store (i32.const 16) (local.get $n))
    (drop (call $set (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
    (local.get $n)))`;

async function moduleStatus(edged: EdgedProcess, name: string) {
  const res = await edged.api(`/api/v1/modules/${name}`);
  return { status: res.status, body: await res.json() };
}

async function waitFor(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const seq = (value: number) => ({ device_id: "d", metric: "seq", value });

Deno.test({
  name: "a module still loading answers 503 with Retry-After; readings ingested meanwhile reach it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const bytes = await wat(SLOW_INIT(800_000_000));
    const manifest = {
      name: "slow",
      version: "1.0.0",
      sha256: await sha256Hex(bytes),
      subscribe: ["sensors/+/seq"],
      grants: { kv: { max_bytes: 64 } },
      limits: { fuel_per_message: 9_000_000_000 },
    };
    let edged = await startEdged();
    const dataDir = edged.dataDir;
    try {
      const form = new FormData();
      form.append("manifest", JSON.stringify(manifest));
      form.append("module", new File([bytes as Uint8Array<ArrayBuffer>], "module.wasm"));
      const put = await edged.api("/api/v1/modules/slow", { method: "PUT", body: form });
      assert.equal(put.status, 201, await put.text());
      for (let i = 0; i < 5; i++) (await postJson(edged, seq(i))).body?.cancel();
      await waitFor("the first five readings handled", async () => {
        const s = (await moduleStatus(edged, "slow")).body;
        return s.messages_in === 5 && s.delivery.readings.lag === 0;
      });
      await edged.stop();

      edged = await startEdged({ dataDir, waitReady: false });
      // Loading: visible as such, messages refused for a moment, readings accepted.
      const loading = await moduleStatus(edged, "slow");
      assert.equal(loading.status, 200);
      assert.equal(loading.body.state, "loading", "the module loads for a while after listening");
      const msg = await edged.api("/api/v1/modules/slow/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic: "sensors/d/seq", payload: { value: -1 } }),
      });
      assert.equal(msg.status, 503);
      assert.equal(msg.headers.get("retry-after"), "1");
      assert.equal((await msg.json()).error.code, "module_loading");
      for (let i = 5; i < 8; i++) {
        const r = await postJson(edged, seq(i));
        assert.equal(r.status, 202);
        await r.body?.cancel();
      }
      assert.equal((await moduleStatus(edged, "slow")).body.state, "loading");

      // Loaded: exactly the three new readings, none of the five from before.
      await waitFor("the readings ingested while loading handled", async () => {
        const s = (await moduleStatus(edged, "slow")).body;
        return s.state === "running" && s.delivery.readings.lag === 0;
      });
      const s = (await moduleStatus(edged, "slow")).body;
      assert.equal(s.messages_in, 3);
      const answer = await edged.api("/api/v1/modules/slow/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic: "sensors/d/seq", payload: { value: 9 } }),
      });
      assert.equal(answer.status, 200);
      assert.equal((await answer.json()).status, 9, "its kv counter saw 5 + 3 readings, then this");
    } finally {
      await edged.stop();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
