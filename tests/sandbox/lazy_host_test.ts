/**
 * The module host loads with the first module (issue 12, idle memory): an
 * edged with no module installed and none to preload answers as a host with
 * no module (ready, an empty list, 404s, the module metrics at zero), builds
 * the host on the first install, which then runs; restarted with that module
 * on disk, it builds the host at start and runs it again.
 */
import assert from "node:assert/strict";
import { postJson, startEdged } from "../_helpers/edged.ts";

const ROOT = new URL("../../examples/modules/", import.meta.url).pathname;

async function form(dir: string): Promise<FormData> {
  const f = new FormData();
  f.append("manifest", await Deno.readTextFile(`${ROOT}${dir}/manifest.json`));
  f.append(
    "module",
    new Blob([await Deno.readFile(`${ROOT}${dir}/module.wasm`)]),
    "module.wasm",
  );
  return f;
}

async function alertsOut(api: (p: string) => Promise<Response>): Promise<number> {
  let out = 0;
  for (let i = 0; i < 200; i++) {
    out = (await (await api("/api/v1/modules/threshold-alert")).json()).messages_out;
    if (out >= 1) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return out;
}

Deno.test("modules: an edged without modules builds its module host on the first install", async () => {
  let edged = await startEdged();
  const dataDir = edged.dataDir;
  try {
    const ready = await fetch(`${edged.url}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    assert.deepEqual(await (await edged.api("/api/v1/modules")).json(), { modules: [] });
    for (
      const [path, init] of [
        ["/api/v1/modules/threshold-alert", undefined],
        ["/api/v1/modules/threshold-alert", { method: "DELETE" }],
        ["/api/v1/modules/threshold-alert/messages", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ topic: "t", payload: 1 }),
        }],
      ] as const
    ) {
      const r = await edged.api(path, init);
      assert.equal(r.status, 404, path);
      assert.equal((await r.json()).error.code, "module_not_found");
    }
    let metrics = await (await fetch(`${edged.url}/metrics`)).text();
    assert.match(metrics, /^edged_modules\{state="running"\} 0$/m);
    assert.match(metrics, /^# TYPE edged_module_call_duration_seconds histogram$/m);

    const created = await edged.api("/api/v1/modules/threshold-alert", {
      method: "PUT",
      body: await form("threshold-alert-c"),
    });
    assert.equal(created.status, 201, await created.clone().text());
    assert.equal((await created.json()).state, "running");
    assert.equal((await fetch(`${edged.url}/readyz`)).status, 200);
    const r = await postJson(edged, { device_id: "pump-7", metric: "temperature", value: 81.5 });
    assert.equal(r.status, 202);
    await r.body?.cancel();
    assert.equal(await alertsOut(edged.api), 1);
    metrics = await (await fetch(`${edged.url}/metrics`)).text();
    assert.match(metrics, /^edged_modules\{state="running"\} 1$/m);
    assert.equal(await edged.stop(), 0);

    edged = await startEdged({ dataDir });
    const list = await (await edged.api("/api/v1/modules")).json();
    assert.deepEqual(list.modules.map((m: { name: string }) => m.name), ["threshold-alert"]);
    assert.equal(list.modules[0].state, "running");
  } finally {
    await edged.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
