/**
 * A full disk, on a real edged process whose data directory is a small tmpfs
 * (mounted in a mount namespace of its own by `unshare`, see
 * `tests/_helpers/namespace.ts`): ingest answers 503 `storage_full` with Retry-After and stores
 * nothing of those requests, the process stays up, and once there is room
 * again it takes readings at once; the readings log stays contiguous, and a
 * module with kv state has seen every accepted reading exactly once.
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../../lib/mod.ts";
import { type EdgedProcess, postJson, startEdged } from "../_helpers/edged.ts";
import { wat } from "../sandbox/_helpers.ts";
import { kvCounterWat } from "../_helpers/wat_modules.ts";
import { fillDisk } from "../_helpers/fill_disk.ts";
import { enter, UNSHARE_FLAGS, withTmpfs } from "../_helpers/namespace.ts";

/** Counts its messages in kv, slowly (a few ms each: its effects come after the disk fills). */
const TALLY = kvCounterWat(1_000_000);

/** Reads the readings and the module's count, waiting for the count to reach `want`. */
const INSPECT = `
import { DatabaseSync } from "node:sqlite";
const [path, want] = [Deno.args[0], Number(Deno.args[1])];
const db = new DatabaseSync(path, { readOnly: true });
let tally = -1;
for (let i = 0; i < 600 && tally !== want; i++) {
  if (i > 0) await new Promise((r) => setTimeout(r, 50));
  const kv = db.prepare("SELECT value FROM module_kv WHERE module = 'tally'").get();
  tally = kv ? new DataView(kv.value.buffer, kv.value.byteOffset).getInt32(0, true) : 0;
}
const rows = db.prepare("SELECT id, value FROM readings WHERE metric = 'seq' ORDER BY id").all();
console.log(JSON.stringify({ tally, rows }));
`;

/**
 * What the running `edged` stored in the database at `path`, read inside its
 * namespace (where its tmpfs is): SQLite resolves /proc/PID/root away.
 */
async function storedAfter(
  edged: EdgedProcess,
  path: string,
  want: number,
): Promise<{ tally: number; rows: { id: number; value: number }[] }> {
  const out = await new Deno.Command("nsenter", {
    args: [
      ...enter(edged.child.pid),
      Deno.execPath(),
      "eval",
      "--ext=ts",
      INSPECT,
      path,
      String(want),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

async function metric(edged: EdgedProcess, name: string): Promise<number> {
  const text = await (await fetch(`${edged.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
}

async function waitFor(what: string, cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name:
    "a full disk: 503 storage_full, nothing half-stored, and every accepted reading counted once",
  // A small disk of its own needs a private mount namespace.
  ignore: UNSHARE_FLAGS === null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const mount = await Deno.makeTempDir({ prefix: "edged-full-" });
    let edged: EdgedProcess | undefined;
    try {
      edged = await startEdged({
        dataDir: `${mount}/data`,
        // A 6 MiB tmpfs over `mount`, seen only by this edged.
        wrapper: withTmpfs(mount, 6),
      });
      // The tmpfs as the test sees it: through the process's own root.
      const root = `/proc/${edged.child.pid}/root${mount}`;
      const bytes = await wat(TALLY);
      const form = new FormData();
      form.append(
        "manifest",
        JSON.stringify({
          name: "tally",
          version: "1.0.0",
          sha256: await sha256Hex(bytes),
          subscribe: ["sensors/+/seq"],
          grants: { kv: { max_bytes: 64 } },
          limits: { fuel_per_message: 100_000_000 },
        }),
      );
      form.append("module", new File([bytes as Uint8Array<ArrayBuffer>], "module.wasm"));
      const put = await edged.api("/api/v1/modules/tally", { method: "PUT", body: form });
      assert.equal(put.status, 201, await put.text());

      const accepted = new Set<number>();
      const refused = new Set<number>();
      let next = 0;
      const post = async () => {
        const values = Array.from({ length: 50 }, () => next++);
        const res = await postJson(
          edged!,
          values.map((value) => ({ device_id: "d", metric: "seq", value })),
        );
        const body = await res.json();
        if (res.status === 202) values.forEach((v) => accepted.add(v));
        else {
          assert.equal(res.status, 503, JSON.stringify(body));
          assert.equal(body.error.code, "storage_full");
          assert.equal(res.headers.get("retry-after"), "30");
          values.forEach((v) => refused.add(v));
        }
        return res.status;
      };
      for (let i = 0; i < 5; i++) assert.equal(await post(), 202);

      const filler = fillDisk(root);
      // SQLite reuses the WAL it has: commits go on until it must grow.
      let full = 0;
      for (let i = 0; i < 2000 && full < 20; i++) if (await post() === 503) full++;
      assert.equal(full, 20, "ingest refuses once the disk is full");
      assert.ok(await metric(edged, "edged_store_full_disk_failures_total") >= 20);
      assert.equal(await metric(edged, "edged_store_disk_full"), 1);
      const statusFull = await (await edged.api("/api/v1/status")).json();
      assert.equal(statusFull.store.disk_full, true, "the status (and the dashboard) say so");
      assert.equal((await fetch(`${edged.url}/healthz`)).status, 200);
      // The module was still at the readings taken before: its effects meet the full disk too.
      await waitFor(
        "the module's effects refused",
        () =>
          Promise.resolve(edged!.lines.some((l) => l.includes("the disk is full: modules wait"))),
      );
      // While the disk stays full the module waits between attempts, rather than spinning.
      const failures = await metric(edged, "edged_store_full_disk_failures_total");
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(await metric(edged, "edged_store_full_disk_failures_total") - failures <= 3);

      // An install meets the full disk too: refused alike, and nothing of it is left on disk.
      const other = new FormData();
      other.append(
        "manifest",
        JSON.stringify({
          name: "other",
          version: "1.0.0",
          sha256: await sha256Hex(bytes),
          grants: { kv: { max_bytes: 64 } },
        }),
      );
      other.append("module", new File([bytes as Uint8Array<ArrayBuffer>], "module.wasm"));
      const refusedInstall = await edged.api("/api/v1/modules/other", {
        method: "PUT",
        body: other,
      });
      assert.equal(refusedInstall.status, 503, await refusedInstall.text());
      assert.equal(refusedInstall.headers.get("retry-after"), "30");
      const left = await Array.fromAsync(Deno.readDir(`${root}/data/modules/other`)).catch(
        () => [],
      );
      assert.deepEqual(left, [], "no half-written version of the refused install");
      assert.equal((await edged.api("/api/v1/modules/other")).status, 404);

      await Deno.remove(filler);
      for (let i = 0; i < 5; i++) {
        assert.equal(await post(), 202, "readings are taken again as soon as there is room");
      }
      await waitFor("the module caught up", async () => {
        const s = await (await edged!.api("/api/v1/modules/tally")).json();
        return s.delivery.readings.lag === 0 && s.state === "running";
      });
      const status = await (await edged.api("/api/v1/modules/tally")).json();
      assert.equal(status.errors, 0, "a full disk is not the module's fault");

      const stored = await storedAfter(edged, `${mount}/data/edged.db`, accepted.size);
      const values = stored.rows.map((r) => r.value);
      assert.deepEqual(
        values,
        [...accepted].sort((a, b) => a - b),
        "exactly the accepted readings",
      );
      assert.ok(
        stored.rows.every((r, i) => i === 0 || r.id === stored.rows[i - 1].id + 1),
        "ids contiguous",
      );
      assert.ok(refused.size > 0 && [...refused].every((v) => !accepted.has(v)));
      assert.equal(stored.tally, accepted.size, "the module counted every accepted reading once");

      assert.equal(await metric(edged, "edged_readings_pending"), accepted.size);
      assert.equal(await metric(edged, "edged_store_disk_full"), 0, "writable again");
    } finally {
      await edged?.stop();
      await Deno.remove(mount, { recursive: true });
    }
  },
});
