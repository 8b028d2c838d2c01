/**
 * kill -9 at every step of an apply (issue 19): a process applies 3.0.0 on
 * a device running 2.0.0 (rollback target 1.0.0) and SIGKILLs itself at one
 * step (tests/ota/_apply_child.ts), once per step, by delta and by full
 * download. After each kill, on disk: a rollback target exists and its slot
 * holds exactly its recorded bytes (1.0.0 before the switch, 2.0.0 from the
 * switch on); the boot step then starts a slot that holds its recorded
 * bytes (completing a rename the kill interrupted), and the next apply
 * finishes the update.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type ApplyStep, prepareBoot, SlotStore, Updater } from "../../ota/mod.ts";
import {
  installTwoSlots,
  publishReleases,
  rollbackTarget,
  sha256Of,
  TRIPLE,
} from "./_update_helpers.ts";
import { serveRepo } from "./_repo_server.ts";

const CHILD = new URL("./_apply_child.ts", import.meta.url).pathname;

const ROUTES: { name: string; older: string; running: string; steps: ApplyStep[] }[] = [
  {
    // 2.0.0 runs: the delta 2.0.0 → 3.0.0 applies.
    name: "delta",
    older: "1.0.0",
    running: "2.0.0",
    steps: ["checked", "downloading", "patching", "staged", "switched", "installed"],
  },
  {
    // 1.0.0 runs: no delta from it, the whole release is downloaded.
    name: "full",
    older: "2.0.0",
    running: "1.0.0",
    steps: ["checked", "downloading", "staged", "switched", "installed"],
  },
];

Deno.test({
  name: "kill -9 at every step of an apply: the rollback target and its bytes survive",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "edged-update-kill-" });
    const repo = join(dir, "repo");
    // Larger than bspatch's 1 MiB piece, so the patch writes more than once.
    const files = await publishReleases(repo, dir, ["1.0.0", "2.0.0", "3.0.0"], 1100 << 10);
    const rel = (v: string) => files[v];
    const server = serveRepo(repo);
    const root = join(repo, "metadata", "1.root.json");
    const release3 = await sha256Of(rel("3.0.0"));
    let n = 0;
    try {
      for (const route of ROUTES) {
        for (const step of route.steps) {
          await t.step(`${route.name}: killed at "${step}"`, async () => {
            const dataDir = join(dir, `data-${n++}`);
            await installTwoSlots(
              dataDir,
              { file: rel(route.older), version: route.older },
              { file: rel(route.running), version: route.running },
            );
            const out = await new Deno.Command(Deno.execPath(), {
              args: ["run", "--allow-all", CHILD, dataDir, server.url, root, step],
              stdout: "piped",
              stderr: "piped",
            }).output();
            assert.equal(
              out.signal,
              "SIGKILL",
              `the apply reached "${step}": ${new TextDecoder().decode(out.stdout)}` +
                new TextDecoder().decode(out.stderr),
            );
            const switched = step === "switched" || step === "installed";
            // On disk, as the power loss left it.
            const target = await rollbackTarget(dataDir);
            assert.deepEqual(
              { slot: target?.slot, version: target?.version, intact: target?.intact },
              switched
                ? { slot: "b", version: route.running, intact: true }
                : { slot: "a", version: route.older, intact: true },
            );
            // The next boot starts a slot that holds what state.json records.
            const store = new SlotStore(dataDir);
            const boot = await prepareBoot(store, { maxBootAttempts: 3, factoryVersion: "0.0.0" });
            assert.equal(boot.slot, switched ? "a" : "b");
            assert.equal(boot.trial, switched);
            assert.ok(await store.slotIntact(boot.state, boot.slot!), "the started slot is intact");
            assert.equal(
              await sha256Of(boot.binary!),
              switched ? release3 : await sha256Of(rel(route.running)),
            );
            assert.equal((await rollbackTarget(dataDir))?.intact, true);
            if (switched) return;
            // The update then completes, reusing what the killed apply left.
            const r = await new Updater({
              dataDir,
              url: server.url,
              rootPath: root,
              triple: TRIPLE,
              deviceId: "kill-device",
              factoryVersion: "0.0.0",
            }).apply();
            assert.equal(r.outcome, "installed");
            assert.equal(r.slot, "a");
            if (step === "staged") assert.equal(r.fetched, 0, "the staged release is used");
            const after = await rollbackTarget(dataDir);
            assert.deepEqual(
              { slot: after?.slot, version: after?.version, intact: after?.intact },
              { slot: "b", version: route.running, intact: true },
            );
          });
        }
      }
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
