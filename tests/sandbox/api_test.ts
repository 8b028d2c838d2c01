/** The modules API of a real edged process (README.md, "HTTP API"). */
import assert from "node:assert/strict";
import { type EdgedProcess, postJson, startEdged } from "../_helpers/edged.ts";
import { manifest, module } from "./_helpers.ts";

const ROOT = new URL("../../examples/modules/", import.meta.url).pathname;

async function form(
  dir: string,
  edit: (m: Record<string, unknown>) => void = () => {},
  wasm?: Uint8Array,
) {
  const manifest = JSON.parse(await Deno.readTextFile(`${ROOT}${dir}/manifest.json`));
  edit(manifest);
  const f = new FormData();
  f.append("manifest", JSON.stringify(manifest));
  f.append(
    "module",
    new Blob([
      (wasm ?? await Deno.readFile(`${ROOT}${dir}/module.wasm`)) as Uint8Array<ArrayBuffer>,
    ]),
    "module.wasm",
  );
  return f;
}

Deno.test("modules API: preload, list, put, validate (422), messages, delete, restart", async (t) => {
  const edged = await startEdged({ env: { EDGED_MODULES_PRELOAD: `${ROOT}threshold-alert-c` } });
  let dataDir = edged.dataDir;
  let proc = edged;
  try {
    await t.step(
      "the preloaded threshold-alert turns an ingested reading into an alert",
      async () => {
        const list = await (await proc.api("/api/v1/modules")).json();
        assert.deepEqual(list.modules.map((m: { name: string }) => m.name), ["threshold-alert"]);
        const r = await postJson(proc, { device_id: "pump-7", metric: "temperature", value: 81.5 });
        assert.equal(r.status, 202);
        await r.body?.cancel();
        let s;
        for (let i = 0; i < 200; i++) {
          s = await (await proc.api("/api/v1/modules/threshold-alert")).json();
          if (s.messages_out === 1) break;
          await new Promise((r) => setTimeout(r, 25));
        }
        assert.equal(s.messages_in, 1);
        assert.equal(s.messages_out, 1);
        assert.equal(s.state, "running");
        assert.ok(s.fuel_used > 0 && s.memory_bytes > 0);
      },
    );

    await t.step("PUT installs (201), replaces (200), and needs the bearer token", async () => {
      const created = await proc.api("/api/v1/modules/relay", {
        method: "PUT",
        body: await form("relay-wat"),
      });
      assert.equal(created.status, 201);
      assert.equal((await created.json()).version, "1.0.0");
      const replaced = await proc.api("/api/v1/modules/relay", {
        method: "PUT",
        body: await form("relay-wat", (m) => (m.version = "1.0.1")),
      });
      assert.equal(replaced.status, 200);
      assert.equal((await replaced.json()).version, "1.0.1");
      const anon = await fetch(`${proc.url}/api/v1/modules/relay`, {
        method: "PUT",
        body: await form("relay-wat"),
      });
      assert.equal(anon.status, 401);
      await anon.body?.cancel();
    });

    await t.step(
      "an invalid module gets 422 with every reason and the running version stays",
      async () => {
        const bad = await proc.api("/api/v1/modules/relay", {
          method: "PUT",
          body: await form("relay-wat", (m) => {
            m.version = "2.0.0";
            m.grants = {};
          }),
        });
        assert.equal(bad.status, 422);
        const body = await bad.json();
        assert.equal(body.error.code, "module_invalid");
        assert.deepEqual(body.error.details, [
          "import edge.publish: not granted by the manifest (needs grants.publish)",
          "import edge.log: not granted by the manifest (needs grants.log)",
        ]);
        // Every reason in one answer: a name that differs from the URL's does not hide the rest,
        const wrongName = await proc.api("/api/v1/modules/other", {
          method: "PUT",
          body: await form("relay-wat", (m) => (m.grants = {})),
        });
        assert.equal(wrongName.status, 422);
        assert.deepEqual((await wrongName.json()).error.details, [
          'manifest name: "relay" differs from the URL name "other"',
          "import edge.publish: not granted by the manifest (needs grants.publish)",
          "import edge.log: not granted by the manifest (needs grants.log)",
        ]);
        // and a refused manifest does not hide what is wrong with the module whatever it says.
        const both = await proc.api("/api/v1/modules/other", {
          method: "PUT",
          body: await form("relay-wat", (m) => (m.version = "two"), new TextEncoder().encode("MZ")),
        });
        assert.equal(both.status, 422);
        const details: string[] = (await both.json()).error.details;
        assert.equal(details.length, 3, details.join("\n"));
        assert.match(details[0], /^manifest name: "relay" differs from the URL name "other"$/);
        assert.match(details[1], /^manifest version: /);
        assert.match(details[2], /^malformed module: /);
        const notJson = new FormData();
        notJson.append("manifest", "{");
        notJson.append("module", new Blob([new Uint8Array([0, 0x61, 0x73, 0x6d])]), "m.wasm");
        const unreadable = await proc.api("/api/v1/modules/other", {
          method: "PUT",
          body: notJson,
        });
        assert.equal(unreadable.status, 422);
        const d2: string[] = (await unreadable.json()).error.details;
        assert.equal(d2.length, 2, d2.join("\n"));
        assert.match(d2[0], /^manifest is not valid JSON/);
        assert.match(d2[1], /^malformed module: /);
        assert.equal((await proc.api("/api/v1/modules/other")).status, 404, "nothing installed");
        const s = await (await proc.api("/api/v1/modules/relay")).json();
        assert.equal(s.version, "1.0.1");
      },
    );

    await t.step("POST messages answers what the module did", async () => {
      const r = await proc.api("/api/v1/modules/relay/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic: "sensors/x/relay", payload: { v: 1 } }),
      });
      assert.equal(r.status, 200);
      const out = await r.json();
      assert.equal(out.status, 0);
      assert.deepEqual(out.published, [{ topic: "uplink/telemetry/relay", payload: { v: 1 } }]);
      assert.ok(out.fuel_used > 0);
      const missing = await proc.api("/api/v1/modules/nope/messages", {
        method: "POST",
        body: "{}",
      });
      assert.equal(missing.status, 404);
      assert.equal((await missing.json()).error.code, "module_not_found");
    });

    await t.step(
      "modules and their state come back after a restart, before /readyz is 200",
      async () => {
        await proc.stop();
        dataDir = proc.dataDir;
        proc = await startEdged({ dataDir });
        const list = await (await proc.api("/api/v1/modules")).json();
        assert.deepEqual(
          list.modules.map((m: { name: string; version: string }) => [m.name, m.version]),
          [
            ["relay", "1.0.1"],
            ["threshold-alert", "1.0.0"],
          ],
        );
      },
    );

    await t.step("DELETE unloads (204), then 404", async () => {
      const del = await proc.api("/api/v1/modules/relay", { method: "DELETE" });
      assert.equal(del.status, 204);
      const again = await proc.api("/api/v1/modules/relay", { method: "DELETE" });
      assert.equal(again.status, 404);
      await again.body?.cancel();
      const get = await proc.api("/api/v1/modules/relay");
      assert.equal(get.status, 404);
      await get.body?.cancel();
    });

    await t.step("module metrics are exposed", async () => {
      const r = await proc.api("/api/v1/modules/threshold-alert/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          topic: "sensors/m/temperature",
          payload: { device_id: "m", metric: "temperature", value: 1, timestamp: 1 },
        }),
      });
      assert.equal(r.status, 200);
      await r.body?.cancel();
      const text = await (await fetch(`${proc.url}/metrics`)).text();
      assert.match(text, /edged_modules\{state="running"\} 1/);
      assert.match(text, /edged_module_messages_total\{module="threshold-alert",direction="in"\}/);
      assert.match(text, /^# TYPE edged_module_messages_total counter$/m);
      assert.match(text, /^# TYPE edged_module_fuel_used_total counter$/m);
      assert.match(
        text,
        /^edged_module_call_duration_seconds_count\{module="threshold-alert"\} [1-9]/m,
      );
    });
  } finally {
    await proc.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("POST messages answers 507 module_effects_refused when the runtime refuses the message's kv writes at commit, never success", async () => {
  const proc = await startEdged();
  try {
    // Every message writes its payload (the JSON text) to key "k", spins a while (so its outcome
    // reaches the runtime well after what the Worker answered before it) and returns kv_set's
    // result.
    const onMessage = `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
        (local i32 i32)
        (local.set 4 (call $set (i32.const 0) (i32.const 1) (local.get 2) (local.get 3)))
        (loop $l (local.set 5 (i32.add (local.get 5) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get 5) (i32.const 100000000))))
        (local.get 4))
      (data (i32.const 0) "k")`;
    const kvSet = `(import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))`;
    const slowInit = `(func (export "edge_init") (result i32) (local i32)
      (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get 0) (i32.const 600000000))))
      (i32.const 0))`;
    const put = async (version: string, maxBytes: number, body: string) => {
      const f = new FormData();
      const m = manifest("shrunk", {
        version,
        grants: { kv: { max_bytes: maxBytes } },
        limits: { fuel_per_message: 9_000_000_000 },
      });
      f.append("manifest", JSON.stringify(m));
      f.append("module", new Blob([await module(body, kvSet) as Uint8Array<ArrayBuffer>]));
      return proc.api("/api/v1/modules/shrunk", { method: "PUT", body: f });
    };
    const send = (payload: unknown) =>
      proc.api("/api/v1/modules/shrunk/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic: "t", payload }),
      });
    const status = async (p: EdgedProcess) => await (await p.api("/api/v1/modules/shrunk")).json();
    const value = "123456789"; // "k" and "\"123456789\"": 12 bytes

    // Version 2 allows 4 bytes. A write of 12 by version 1, still running in the Worker while
    // version 2 initialises there, fits version 1's grant in the Worker but not the grant it
    // commits under. The message must reach the Worker after version 2's load and before the
    // swap (it then runs after version 2's init, and its spin outlasts the install's last steps,
    // storing the files, before the swap): attempts that miss the window (told apart by what
    // committed) go again.
    let waitMs = 300;
    for (let attempt = 1; attempt <= 10; attempt++) {
      await (await proc.api("/api/v1/modules/shrunk", { method: "DELETE" })).body?.cancel();
      const v1 = await put("1.0.0", 100, onMessage);
      assert.equal(v1.status, 201, await v1.text());
      let swapped = false;
      // Bytes of its own each attempt: V8 reuses the code it optimised for the same bytes, so
      // the init (the window) would shrink from one attempt to the next.
      const unique = `(data (i32.const 64) "attempt ${attempt}")`;
      const swap = put("2.0.0", 4, onMessage + slowInit + unique).then(async (r) => {
        swapped = true;
        assert.equal(r.status, 200, await r.text());
      });
      await new Promise((r) => setTimeout(r, waitMs));
      if (swapped) {
        waitMs /= 1.5;
        continue;
      }
      const r = await send(value);
      const body = await r.json();
      await swap;
      const s = await status(proc);
      if (r.status === 200 && body.status === 0 && s.kv_bytes === 12) {
        waitMs *= 1.5; // version 1 ran it before version 2's load reached the Worker: it committed
        continue;
      }
      if (r.status === 200 && body.status !== 0) {
        waitMs /= 1.5; // version 2 ran it, and its kv_set answered QUOTA itself
        continue;
      }
      // Version 1 ran it; the runtime refused its write under version 2's grant.
      assert.equal(s.kv_bytes, 0, "nothing of the message was kept");
      assert.equal(s.faults.host, 1, "counted as a host fault");
      assert.equal(r.status, 507, `refused effects answered ${r.status} ${JSON.stringify(body)}`);
      assert.equal(body.error.code, "module_effects_refused");
      assert.match(body.error.message, /refused/);
      assert.match(body.error.message, /kv grant/);
      assert.equal(body.status, undefined, "no module status that reads as success");
      // It started over from what committed: version 2's kv_set answers QUOTA (-5) itself.
      const again = await send(value);
      assert.equal(again.status, 200);
      assert.equal((await again.json()).status, -5);
      return;
    }
    assert.fail("no attempt delivered the message between version 2's load and its swap");
  } finally {
    await proc.stop();
    await Deno.remove(proc.dataDir, { recursive: true });
  }
});

Deno.test("modules API: the memory budget refuses an install past it (507), counts a swap once, frees on delete, holds after a restart", async () => {
  const MIB = 1 << 20;
  const claimed = async (p: EdgedProcess) => {
    const text = await (await fetch(`${p.url}/metrics`)).text();
    const of = (what: string) =>
      Number(
        text.match(new RegExp(`^edged_modules_memory_bytes\\{of="${what}"\\} (\\d+)`, "m"))?.[1],
      );
    return { budget: of("budget"), claimed: of("claimed") };
  };
  const put = async (p: EdgedProcess, name: string, memory: number, wasm?: Uint8Array) => {
    const res = await p.api(`/api/v1/modules/${name}`, {
      method: "PUT",
      body: await form("relay-wat", (m) => {
        m.name = name;
        (m.limits as Record<string, number>).memory_bytes = memory;
      }, wasm),
    });
    return { status: res.status, body: await res.json() };
  };
  let proc = await startEdged({ env: { EDGED_MODULES_MEMORY_BUDGET_BYTES: String(3 * MIB) } });
  const dataDir = proc.dataDir;
  try {
    assert.deepEqual(await claimed(proc), { budget: 3 * MIB, claimed: 0 });
    assert.equal((await put(proc, "a", MIB)).status, 201);
    assert.equal((await put(proc, "b", MIB)).status, 201);
    const over = await put(proc, "c", 2 * MIB);
    assert.equal(over.status, 507);
    assert.equal(over.body.error.code, "module_memory_budget");
    assert.match(over.body.error.message, /2\.0 MiB .* 2\.0 MiB of the 3\.0 MiB/);
    assert.equal((await proc.api("/api/v1/modules/c")).status, 404, "nothing of it installed");
    // A swap replaces its own claim: 1 MiB of b plus the new 2 MiB of a fit.
    assert.equal((await put(proc, "a", 2 * MIB)).status, 200);
    assert.deepEqual(await claimed(proc), { budget: 3 * MIB, claimed: 3 * MIB });
    // A swap that fails validation leaves the running version's claim as it was.
    assert.equal((await put(proc, "b", 65536, new Uint8Array([0, 1, 2]))).status, 422);
    assert.equal((await claimed(proc)).claimed, 3 * MIB);
    assert.equal((await put(proc, "c", MIB)).status, 507);
    assert.equal((await proc.api("/api/v1/modules/b", { method: "DELETE" })).status, 204);
    assert.equal((await put(proc, "c", MIB)).status, 201);
  } finally {
    await proc.stop();
  }
  // Restarted with a smaller budget: what is installed still runs; nothing more is taken.
  proc = await startEdged({ dataDir, env: { EDGED_MODULES_MEMORY_BUDGET_BYTES: String(MIB) } });
  try {
    const list = await (await proc.api("/api/v1/modules")).json();
    assert.deepEqual(
      list.modules.map((m: { name: string; state: string }) => `${m.name}:${m.state}`).sort(),
      ["a:running", "c:running"],
    );
    assert.deepEqual(await claimed(proc), { budget: MIB, claimed: 3 * MIB });
    assert.ok(proc.lines.some((l) => l.includes("more than the budget")), "the excess is logged");
    assert.equal((await put(proc, "d", 65536)).status, 507);
  } finally {
    await proc.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
