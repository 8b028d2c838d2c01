// deno-lint-ignore-file no-explicit-any
/**
 * The launcher and the edged it starts live and end together (ota/update/
 * supervisor.ts): when the launcher alone is killed (kill -9, the OOM killer)
 * during the trial of a new release, its edged shuts down by itself, keeping
 * every reading it acknowledged, and the launcher started again boots the same
 * trial and confirms it. A trial whose edged finds the data directory locked
 * by another edged is not a failed start: no rollback, whether the release
 * says so (exit 73) or predates that code (exit 2 while the lock is held).
 *
 * Real processes throughout: stand-in releases under `edged run --supervise`
 * in a session of their own (killed as a group at the end, pass or fail), and
 * util-linux `flock` as the other holder of the lock.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { supervise } from "../../ota/mod.ts";
import { lockDataDir } from "../../runtime/mod.ts";
import { Device, freePort, installTwoSlots, makeRelease, waitFor } from "./_update_helpers.ts";

/** A data directory whose active slot b holds `2.0.0` on trial (switched, not yet started). */
async function trialDevice(dir: string, prelude: string): Promise<string> {
  const data = join(dir, "data");
  await makeRelease(join(dir, "edged-1.0.0"), "1.0.0", { seed: 1 });
  await makeRelease(join(dir, "edged-2.0.0"), "2.0.0", { seed: 2, prelude });
  await installTwoSlots(data, { file: join(dir, "edged-1.0.0"), version: "1.0.0" }, {
    file: join(dir, "edged-2.0.0"),
    version: "2.0.0",
  });
  const path = join(data, "update", "state.json");
  const state = JSON.parse(await Deno.readTextFile(path));
  state.trial = { slot: "b", version: "2.0.0", attempts: 0, since: new Date().toISOString() };
  await Deno.writeTextFile(path, JSON.stringify(state, null, 2));
  return data;
}

/** Whether process `pid` still runs (a zombie nobody reaps has ended). */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** kill -9 of a device's whole session (the launcher ran under setsid: its pid is the group's). */
function killGroup(device: Device | undefined): void {
  if (!device?.child) return;
  try {
    Deno.kill(-device.child.pid, "SIGKILL");
  } catch { /* gone */ }
}

const onTrial = (s: any) => s.current.version === "2.0.0" && s.trial !== null;
const confirmed = (s: any) => s.current.version === "2.0.0" && s.trial === null;

Deno.test({
  name:
    "kill -9 of the launcher alone during a trial: its edged ends by itself, the trial confirms",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "edged-orphan-" });
    // While `hold` exists the release cannot reach its broker: it serves but does not confirm.
    const hold = join(dir, "hold");
    await Deno.writeTextFile(hold, "");
    const data = await trialDevice(
      dir,
      `[ -e ${hold} ] && export EDGED_MQTT_URL=mqtt://127.0.0.1:1`,
    );
    const port = freePort();
    const env = { EDGED_UPDATE_BOOT_DEADLINE_S: "60", EDGED_UPDATE_MAX_BOOT_ATTEMPTS: "2" };
    const factory = join(dir, "edged-1.0.0");
    const first = new Device(factory, data, port, env, { setsid: true });
    let second: Device | undefined;
    let orphan = 0;
    try {
      first.start();
      await first.waitStatus("2.0.0 on trial", onTrial);
      const readings = Array.from({ length: 50 }, (_, i) => ({
        device_id: "pump-1",
        metric: "seq",
        value: i,
      }));
      const r = await first.api("/api/v1/data", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(readings),
      });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      orphan = await first.edgedPid();

      Deno.kill(first.child.pid, "SIGKILL");
      await first.child.status;
      const killedAt = performance.now();
      await Deno.remove(hold);
      // Started again at once, as a service manager would, while the orphan still runs.
      second = new Device(factory, data, port, env, { setsid: true }).start();
      await waitFor(
        "the orphaned edged to exit by itself",
        async () => !(await alive(orphan)),
        15000,
      );
      console.log(
        `orphaned edged ${orphan} exited ${
          Math.round(performance.now() - killedAt)
        } ms after its launcher was killed`,
      );

      const s = await second.waitStatus("2.0.0 confirmed after the restart", confirmed);
      assert.deepEqual([s.active, s.previous], ["b", "a"]);
      const state = await second.state();
      assert.equal(state.last_rollback, null, JSON.stringify(state.last_rollback));
      assert.equal(state.rejected, undefined);
      // Through the same shutdown as on SIGTERM (its stdout is still the first device's pipe).
      const said = first.messages();
      assert.ok(
        said.some((m) => /^shutting down: the launcher .* is gone/.test(m)),
        said.join("\n"),
      );
      assert.ok(said.includes("stopped"), said.join("\n"));
      assert.equal(await second.stop(), 0);

      const db = new DatabaseSync(join(data, "edged.db"), { readOnly: true });
      try {
        const rows = db.prepare("SELECT value FROM readings WHERE metric = 'seq' ORDER BY value")
          .all() as { value: number }[];
        assert.deepEqual(rows.map((row) => row.value), readings.map((x) => x.value));
      } finally {
        db.close();
      }
    } finally {
      killGroup(first);
      killGroup(second);
      if (orphan && await alive(orphan)) Deno.kill(orphan, "SIGKILL");
      await first.child?.status;
      await second?.child.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

for (
  const [name, forget] of [
    ["a release that knows the launcher (exit 73)", ""],
    ["a release from before exit 73 (exit 2 while the lock is held)", "unset _EDGED_LAUNCHER"],
  ]
) {
  Deno.test({
    name: `a trial whose edged finds the data directory locked is not rolled back: ${name}`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "edged-locked-trial-" });
      const data = join(dir, "data");
      const once = join(dir, "held");
      const locked = join(dir, "locked");
      // Its first start: another process (flock) takes the runtime lock after the launcher's
      // check and before this edged's own, holds it 3 s, and is gone for the second start.
      await trialDevice(
        dir,
        `if [ ! -e ${once} ]; then
  : > ${once}
  flock ${join(data, "edged.lock")} sh -c ': > ${locked}; sleep 3' &
  while [ ! -e ${locked} ]; do sleep 0.05; done
fi
${forget}`,
      );
      // One attempt: a start that counted would roll 2.0.0 back at once.
      const device = new Device(join(dir, "edged-1.0.0"), data, freePort(), {
        EDGED_UPDATE_BOOT_DEADLINE_S: "60",
        EDGED_UPDATE_MAX_BOOT_ATTEMPTS: "1",
      }, { setsid: true });
      try {
        device.start();
        const s = await device.waitStatus("2.0.0 confirmed", confirmed);
        assert.deepEqual([s.active, s.previous], ["b", "a"]);
        const state = await device.state();
        assert.equal(state.last_rollback, null, JSON.stringify(state.last_rollback));
        assert.equal(state.rejected, undefined);
        assert.ok(
          device.messages().some((m) => /not counted as a start of 2\.0\.0/.test(m)),
          device.messages().join("\n"),
        );
        assert.ok(device.messages().some((m) => /waiting for it to exit/.test(m)));
        assert.equal(await device.stop(), 0);
      } finally {
        killGroup(device);
        await device.child?.status;
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test("the launcher gives up with 2, starting nothing, while another edged keeps the data directory", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "edged-locked-" });
  const held = await lockDataDir(dataDir);
  try {
    const started = performance.now();
    const code = await supervise({
      dataDir,
      runArgs: [],
      factoryCommand: ["false"],
      factoryVersion: "1.0.0",
      maxBootAttempts: 3,
      bootDeadlineMs: 60000,
      lockWaitMs: 1500,
      handleSignals: false,
      // Bounds the test whatever the launcher does.
      signal: AbortSignal.timeout(15000),
    });
    assert.equal(code, 2);
    assert.ok(performance.now() - started >= 1400, "it waited for the holder first");
    // Nothing of the update state was touched.
    await assert.rejects(Deno.stat(join(dataDir, "update")), Deno.errors.NotFound);
  } finally {
    held.release();
    await Deno.remove(dataDir, { recursive: true });
  }
});
