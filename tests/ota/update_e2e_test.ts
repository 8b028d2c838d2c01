// deno-lint-ignore-file no-explicit-any
/**
 * End to end, from `edged repo` to a device process under
 * `edged run --supervise`: v1 → v2 by delta, v2 → v3 by full download
 * (rate-limited, kill -9 mid-download, resumed), a release that never gets
 * healthy rolled back at its deadline, a release that crashes at start
 * rolled back by the boot counter, kill -9 during a first boot, kill -9 of
 * the whole device right after the switch and at three moments of an apply
 * (refresh, download/patch, patch/switch), module deploy, manual rollback,
 * and a damaged state file.
 *
 * The releases are stand-ins for compiled binaries (see _update_helpers.ts:
 * `deno compile` cannot make runnable binaries here); they go through the
 * same slots, switch and launcher code a compiled binary does.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { serveRepository } from "../../ota/mod.ts";
import { runCli } from "../_helpers/edged.ts";
import {
  Device,
  freePort,
  type PublishOptions,
  publishRelease,
  repoCli,
  TOKEN,
  waitFor,
} from "./_update_helpers.ts";

Deno.test({
  name: "update end to end: delta, full, resume, deadline and crash rollbacks, kill -9 points",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "edged-update-e2e-" });
    const repo = join(dir, "repo");
    const rel = (v: string) => join(dir, `edged-${v}`);
    await repoCli("init", repo);
    await publishRelease(repo, rel("1.0.0"), "1.0.0", { seed: 1 });
    const out2 = await publishRelease(repo, rel("2.0.0"), "2.0.0", { seed: 2 });
    assert.match(out2, /deltas\/.*1\.0\.0_to_2\.0\.0\.bsdiff/);
    const server = serveRepository(repo, { port: 0, onListen: () => {} });
    const device = new Device(rel("1.0.0"), join(dir, "data"), freePort(), {
      EDGED_UPDATE_URL: `http://127.0.0.1:${server.addr.port}/`,
      EDGED_UPDATE_ROOT: join(repo, "metadata", "1.root.json"),
      EDGED_UPDATE_AUTO_APPLY: "false",
      EDGED_UPDATE_RATE_LIMIT_BYTES_PER_S: String(256 << 10),
      EDGED_UPDATE_BURST_BYTES: "16384",
      EDGED_UPDATE_BOOT_DEADLINE_S: "8",
      EDGED_UPDATE_MAX_BOOT_ATTEMPTS: "2",
      EDGED_DEVICE_ID: "e2e-device",
      // A session of its own, so killAll is one kill of the whole group (a power loss): killing
      // the launcher and then its edged could miss an edged the launcher spawns in between.
    }, { setsid: true }).start();
    // One delta (from the previous release) keeps publishing quick.
    const publish = (v: string, o: PublishOptions) =>
      publishRelease(repo, rel(v), v, { deltas: 1, ...o });
    // Later steps build on earlier ones: stop at the first failure, show the device's log.
    const step = async (name: string, fn: () => Promise<void>) => {
      const ok = await t.step(name, async () => {
        try {
          await fn();
        } catch (err) {
          console.error(device.messages().slice(-40).join("\n"));
          throw err;
        }
      });
      if (!ok) throw new Error(`step failed: ${name}`);
    };
    const running = (v: string) => (s: any) => s.current.version === v && s.trial === null;
    try {
      await step("first start adopts the factory executable as slot a", async () => {
        const s = await device.status();
        assert.equal(s.active, "a");
        assert.equal(s.slots.a.source, "factory");
      });

      await step("v1 → v2 by delta, confirmed healthy", async () => {
        const r = await device.api("/api/v1/update/apply?wait=1", { method: "POST" });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.outcome, "installed");
        assert.equal(r.body.method, "delta");
        assert.equal(r.body.version, "2.0.0");
        assert.ok(r.body.fetched < 10_000, `a delta is small, fetched ${r.body.fetched}`);
        const s = await device.waitStatus("2.0.0 confirmed", running("2.0.0"));
        assert.deepEqual([s.active, s.previous], ["b", "a"]);
        assert.equal(s.slots.b.source, "delta");
      });

      await step("v2 → v3 by full download, kill -9 mid-download, resumed", async () => {
        await publish("3.0.0", { seed: 3, deltas: 0 });
        const r = await device.api("/api/v1/update/apply", { method: "POST" });
        assert.equal(r.status, 202);
        const p = await device.waitStatus(
          "download progress",
          (s) => s.progress && s.progress.received > 300_000,
        );
        assert.equal(p.phase, "downloading");
        await device.killEdged();
        // The launcher restarts the confirmed version; the download resumes.
        const again = await waitFor("apply after restart", async () => {
          const res = await device.api("/api/v1/update/apply?wait=1", { method: "POST" });
          return res.status === 200 ? res.body : undefined;
        });
        assert.equal(again.method, "full");
        assert.equal(again.version, "3.0.0");
        const total = (await Deno.stat(rel("3.0.0"))).size;
        assert.ok(
          again.fetched < total - 200_000,
          `resumed: fetched ${again.fetched} of ${total} bytes after the kill`,
        );
        assert.match(again.deltaFallback, /no delta/);
        await device.waitStatus("3.0.0 confirmed", running("3.0.0"));
      });

      await step("a release that never gets healthy is rolled back at its deadline", async () => {
        // Points MQTT at a closed port: edged starts but never becomes ready.
        await publish("4.0.0", {
          seed: 4,
          prelude: "export EDGED_MQTT_URL=mqtt://127.0.0.1:1",
        });
        const r = await device.api("/api/v1/update/apply?wait=1", { method: "POST" });
        assert.equal(r.body.version, "4.0.0");
        const s = await device.waitStatus(
          "rollback to 3.0.0",
          (s) => s.last_rollback?.from === "4.0.0" && running("3.0.0")(s),
        );
        assert.match(s.last_rollback.reason, /not (healthy|confirmed healthy) within 8 s/);
        // That status may have come from the rolled-back edged as it stops (it
        // reads state.json, which the launcher has just rewritten): the check
        // waits for whichever edged answers next.
        const c = await waitFor("the update check", async () => {
          const r = await device.api("/api/v1/update/check", { method: "POST" });
          return r.status === 200 ? r : undefined;
        });
        assert.equal(c.body.available, null, "a rolled-back release is not offered again");
      });

      await step("a release that crashes at start is rolled back by the boot counter", async () => {
        await publish("5.0.0", { seed: 5, extraArgs: "--listen not-an-address" });
        // Through the CLI this time: `edged update apply` waits and prints the outcome.
        const cli = await runCli(["update", "apply", "--url", device.url, "--token", TOKEN]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.equal(JSON.parse(cli.stdout).version, "5.0.0");
        const s = await device.waitStatus(
          "rollback to 3.0.0",
          (s) => s.last_rollback?.from === "5.0.0" && running("3.0.0")(s),
        );
        assert.match(s.last_rollback.reason, /in 2 attempts/);
      });

      await step(
        "kill -9 during the first boot of a new version: next start confirms",
        async () => {
          await publish("6.0.0", { seed: 6 });
          const r = await device.api("/api/v1/update/apply?wait=1", { method: "POST" });
          assert.equal(r.body.version, "6.0.0");
          // The trial has been counted (attempt 1) before its start: kill it.
          await waitFor(
            "trial attempt 1",
            async () => (await device.state()).trial?.attempts === 1,
          );
          await device.killEdged();
          await device.waitStatus("6.0.0 confirmed", running("6.0.0"));
          assert.ok(
            device.messages().some((m) => /on trial, attempt 2/.test(m)),
          );
        },
      );

      await step(
        "kill -9 of the whole device right after the switch: boots the new version",
        async () => {
          await publish("7.0.0", { seed: 7 });
          const r = await device.api("/api/v1/update/apply?wait=1", { method: "POST" });
          assert.equal(r.body.version, "7.0.0");
          await device.killAll();
          const st = await device.state();
          assert.equal(st.slots[st.active].version, "7.0.0");
          device.start();
          await device.waitStatus("7.0.0 confirmed", running("7.0.0"));
        },
      );

      await step(
        "a module from the repository installs through the same verified path",
        async () => {
          const ex = new URL("../../examples/modules/relay-wat/", import.meta.url).pathname;
          await repoCli(
            "add",
            repo,
            "--module",
            join(ex, "module.wasm"),
            "--manifest",
            join(ex, "manifest.json"),
          );
          const r = await device.api("/api/v1/update/modules/relay/deploy", { method: "POST" });
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.deepEqual(r.body, { name: "relay", version: "1.0.0" });
          const m = await device.api("/api/v1/modules/relay");
          assert.equal(m.status, 200);
          const missing = await device.api("/api/v1/update/modules/nope/deploy", {
            method: "POST",
          });
          assert.equal(missing.status, 404);
        },
      );

      await step("edged update status talks to the running device", async () => {
        const text = await runCli(["update", "status", "--url", device.url, "--token", TOKEN]);
        assert.equal(text.code, 0, text.stderr);
        assert.match(text.stdout, /^running\s+7\.0\.0 from slot a$/m);
        assert.match(text.stdout, /^\s+slot a: 7\.0\.0 .*\[active\]$/m);
        assert.match(text.stdout, /^error\s+.*no module nope/m);
        const cli = await runCli([
          "update",
          "status",
          "--json",
          "--url",
          device.url,
          "--token",
          TOKEN,
        ]);
        assert.equal(cli.code, 0, cli.stderr);
        const s = JSON.parse(cli.stdout);
        assert.equal(s.current.version, "7.0.0");
        const metrics = await (await fetch(`${device.url}/metrics`)).text();
        assert.match(metrics, /edged_update_info\{version="7.0.0",slot="a"\} 1/);
        // The last operation was the refused deploy of "nope".
        assert.match(metrics, /edged_update_phase\{phase="failed"\} 1/);
        assert.match(s.last_error, /no module nope/);
      });

      await step("manual rollback through the API and the offline CLI", async () => {
        const r = await device.api("/api/v1/update/rollback", { method: "POST" });
        assert.equal(r.status, 200);
        await device.waitStatus("back on 6.0.0", running("6.0.0"));
        assert.equal(await device.stop(), 0);
        const cli = await runCli([
          "update",
          "rollback",
          "--offline",
          "--data-dir",
          device.dataDir,
        ], { EDGED_API_TOKEN: TOKEN });
        assert.equal(cli.code, 0, cli.stderr);
        const st = await device.state();
        assert.equal(st.slots[st.active].version, "7.0.0");
      });

      await step("kill -9 of the whole device at several moments of an apply", async () => {
        device.start();
        let current = (await device.status()).current.version;
        // Measured here: ~50 ms after the 202 the TUF refresh is under way,
        // ~150 ms the download or the patch, ~350 ms the patch or the switch.
        for (const [v, delayMs] of [["8.0.0", 20], ["9.0.0", 120], ["10.0.0", 330]] as const) {
          await publish(v, { seed: Number.parseInt(v) });
          await device.api("/api/v1/update/apply", { method: "POST" });
          await new Promise((r) => setTimeout(r, delayMs));
          await device.killAll();
          device.start();
          // Whatever the moment, the device comes up on a verified version,
          // old or new, and finishes the update when asked again.
          const s = await device.waitStatus("a confirmed version", (s) => s.trial === null);
          assert.ok([current, v].includes(s.current.version), `${s.current.version} after kill`);
          assert.equal(s.current.sha256, s.slots[s.active].sha256);
          if (s.current.version !== v) {
            const r = await device.api("/api/v1/update/apply?wait=1", { method: "POST" });
            assert.equal(r.body.version, v, JSON.stringify(r.body));
            await device.waitStatus(`${v} confirmed`, running(v));
          }
          current = v;
        }
        assert.equal(await device.stop(), 0);
      });

      await step("a damaged state.json does not keep the device down", async () => {
        await Deno.writeTextFile(join(device.dataDir, "update", "state.json"), "{garbage");
        device.start();
        const s = await device.status();
        assert.equal(s.active, null, "the launcher's own build runs");
        const names = [...Deno.readDirSync(join(device.dataDir, "update"))].map((e) => e.name);
        assert.ok(names.some((n) => n.startsWith("state.json.bad-")), names.join());
        assert.equal(await device.stop(), 0);
      });
    } finally {
      const logFile = Deno.env.get("UPDATE_E2E_LOG");
      if (logFile) await Deno.writeTextFile(logFile, device.lines.join("\n"));
      await device.killAll().catch(() => {});
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
