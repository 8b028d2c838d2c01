/**
 * One edged per data directory (runtime/lock.ts): a second `edged run` on the
 * same directory exits 2 naming the directory and the holder's pid, writes
 * nothing and leaves the first one serving; kill -9 leaves no stale lock; the
 * launcher (`--supervise`) leaves the runtime lock to its child.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { MAIN, postJson, RUN_FLAGS, startEdged } from "../_helpers/edged.ts";
import { freePort } from "../_helpers/mosquitto.ts";
import {
  assertUnlocked,
  DataDirLockedError,
  LAUNCHER_LOCK,
  lockDataDir,
  RUNTIME_LOCK,
} from "../../runtime/mod.ts";

const TOKEN = "test-token-0123456789abcdef";

/** Runs `edged ...args` to its end (killed after `timeoutMs`: a second edged that did start). */
async function edged(
  args: string[],
  timeoutMs = 20000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...RUN_FLAGS, MAIN, ...args],
    env: { NO_COLOR: "1", EDGED_API_TOKEN: TOKEN, EDGED_LOG_FORMAT: "json" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Names and sizes of the files in `dir`, except the store's (the running edged writes them). */
function listing(dir: string): string[] {
  return [...Deno.readDirSync(dir)].filter((e) => !e.name.startsWith("edged.db"))
    .map((e) => `${e.name} ${Deno.statSync(join(dir, e.name)).size}`).sort();
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 30000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("lockDataDir: one holder at a time, the pid in the file, a check writes nothing", async () => {
  const dir = join(await Deno.makeTempDir({ prefix: "edged-lock-" }), "data");
  try {
    const held = await lockDataDir(dir); // creates the directory
    assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
    assert.equal(Deno.readTextFileSync(held.path), `${Deno.pid}\n`);
    // flock locks belong to the open file, so a second open in this process conflicts too.
    const err = await lockDataDir(dir).catch((e) => e);
    assert.ok(err instanceof DataDirLockedError, String(err));
    assert.equal(err.pid, Deno.pid);
    assert.equal(err.dataDir, dir);
    assert.match(
      err.message,
      new RegExp(`^data directory ${dir} is in use by another edged \\(pid ${Deno.pid}\\)`),
    );
    await assert.rejects(assertUnlocked(dir), DataDirLockedError);
    held.release();
    held.release(); // twice is harmless

    Deno.writeTextFileSync(held.path, "4242\n");
    await assertUnlocked(dir);
    assert.equal(Deno.readTextFileSync(held.path), "4242\n", "a check leaves the file alone");
    const launcher = await lockDataDir(dir, { name: LAUNCHER_LOCK, holder: "another launcher" });
    const again = await lockDataDir(dir); // another file: both can be held
    const l2 = await lockDataDir(dir, { name: LAUNCHER_LOCK, holder: "another launcher" })
      .catch((e) => e);
    assert.match(String(l2.message), /in use by another launcher/);
    launcher.release();
    again.release();
  } finally {
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});

Deno.test({
  name: "a second edged on one data directory exits 2 and writes nothing; kill -9 leaves no lock",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const first = await startEdged();
    const dir = first.dataDir;
    let third: Awaited<ReturnType<typeof startEdged>> | undefined;
    try {
      assert.equal((await postJson(first, { device_id: "a", value: 1 })).status, 202);
      const lockFile = join(dir, RUNTIME_LOCK);
      assert.equal(Deno.readTextFileSync(lockFile), `${first.child.pid}\n`);
      const before = listing(dir);
      const lockMtime = Deno.statSync(lockFile).mtime?.getTime();

      const second = await edged(["run", "--data-dir", dir, "--listen", "127.0.0.1:0"]);
      assert.equal(second.code, 2, second.stderr);
      assert.equal(
        second.stderr.trim(),
        `edged: data directory ${dir} is in use by another edged (pid ${first.child.pid}); ` +
          "stop it first, or give this one another --data-dir",
      );
      assert.equal(second.stdout, "", "no log line: it stopped before logging was set up");
      assert.deepEqual(listing(dir), before, "nothing written");
      assert.equal(Deno.statSync(lockFile).mtime?.getTime(), lockMtime);
      assert.equal(Deno.readTextFileSync(lockFile), `${first.child.pid}\n`);

      // The first one keeps serving.
      const ready = await fetch(first.url + "/readyz");
      await ready.body?.cancel();
      assert.equal(ready.status, 200);
      const res = await postJson(first, { device_id: "a", value: 2 });
      await res.body?.cancel();
      assert.equal(res.status, 202);

      // kill -9: the kernel drops the lock with the process.
      first.child.kill("SIGKILL");
      await first.exited;
      third = await startEdged({ dataDir: dir });
      assert.equal(Deno.readTextFileSync(lockFile), `${third.child.pid}\n`);
      const s = await (await third.api("/api/v1/status")).json();
      assert.equal(s.store.readings_pending, 2, "the same store: both readings wait for uplink");
      assert.equal(await third.stop(), 0);
      third = undefined;
    } finally {
      await first.stop("SIGKILL").catch(() => {});
      await third?.stop("SIGKILL").catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the launcher leaves the runtime lock to its child; a second edged or launcher exits 2",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "edged-lock-supervise-" });
    const port = freePort();
    const launcher = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...RUN_FLAGS,
        MAIN,
        "run",
        "--supervise",
        "--data-dir",
        dir,
        "--listen",
        `127.0.0.1:${port}`,
      ],
      env: { EDGED_API_TOKEN: TOKEN, EDGED_LOG_FORMAT: "json" },
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    try {
      await waitFor("the launched edged to be ready", async () => {
        const r = await fetch(`http://127.0.0.1:${port}/readyz`);
        await r.body?.cancel();
        return r.status === 200 ? true : undefined;
      });
      const out = await new Deno.Command("pgrep", { args: ["-P", String(launcher.pid)] }).output();
      const child = Number(new TextDecoder().decode(out.stdout).trim());
      assert.ok(child > 0, "the launcher runs edged as its child");
      assert.equal(Deno.readTextFileSync(join(dir, RUNTIME_LOCK)), `${child}\n`);
      assert.equal(Deno.readTextFileSync(join(dir, LAUNCHER_LOCK)), `${launcher.pid}\n`);
      // The launcher's lock file is not inherited by the child (close-on-exec).
      const childFiles = [...Deno.readDirSync(`/proc/${child}/fd`)].map((e) => {
        try {
          return Deno.readLinkSync(`/proc/${child}/fd/${e.name}`);
        } catch {
          return "";
        }
      });
      assert.ok(childFiles.includes(join(dir, RUNTIME_LOCK)), childFiles.join());
      assert.ok(!childFiles.includes(join(dir, LAUNCHER_LOCK)), childFiles.join());

      const plain = await edged(["run", "--data-dir", dir, "--listen", "127.0.0.1:0"]);
      assert.equal(plain.code, 2, plain.stderr);
      assert.match(plain.stderr, new RegExp(`in use by another edged \\(pid ${child}\\)`));
      const second = await edged([
        "run",
        "--supervise",
        "--data-dir",
        dir,
        "--listen",
        "127.0.0.1:0",
      ]);
      assert.equal(second.code, 2, second.stderr);
      assert.match(second.stderr, new RegExp(`^edged: data directory ${dir} is in use by`));

      launcher.kill("SIGTERM");
      assert.equal((await launcher.status).code, 0);
      // Both locks went with the processes.
      await assertUnlocked(dir);
      await assertUnlocked(dir, { name: LAUNCHER_LOCK });
    } finally {
      try {
        launcher.kill("SIGKILL");
      } catch { /* gone */ }
      await launcher.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("edged update rollback --offline and update boot refuse while an edged holds the data directory", async () => {
  const dir = join(await Deno.makeTempDir({ prefix: "edged-lock-" }), "data");
  try {
    const held = await lockDataDir(dir);
    try {
      for (const args of [["update", "rollback", "--offline"], ["update", "boot"]]) {
        const r = await edged([...args, "--data-dir", dir]);
        assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`data directory ${dir} is in use by another edged`));
      }
    } finally {
      held.release();
    }
    // Free again: boot goes ahead (and counts a start).
    const r = await edged(["update", "boot", "--data-dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"slot"/);
  } finally {
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});
