// deno-lint-ignore-file no-explicit-any
/**
 * Issue 13, replayed against the updater: M3 (a server that sends the
 * release at 600 bytes per second; then check, rollback and SIGTERM), L5
 * (the metadata idle timeout is `update.timeout_s`) and L6 (a signed delta
 * whose header announces more than the release). Each shows the contained
 * outcome: check and rollback answer at once, a rollback cancels the
 * download and keeps its bytes, SIGTERM stops edged with exit 0 well within
 * its shutdown timeout, a stalled metadata server fails a check after the
 * configured timeout, and the lying delta is refused before it writes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { addRelease, bsdiff, Repository, UpdateCancelledError, Updater } from "../../ota/mod.ts";
import { type EdgedProcess, startEdged } from "../_helpers/edged.ts";
import {
  installTwoSlots,
  makeRelease,
  publishReleases,
  rollbackTarget,
  sha256Of,
  TRIPLE,
  waitFor,
} from "./_update_helpers.ts";
import { serveRepo } from "./_repo_server.ts";

/**
 * A repository with 1.0.0, 2.0.0 and 3.0.0 (deltas 1→2 and 2→3) and a data
 * directory running 1.0.0 with 2.0.0 as the rollback target: 3.0.0 comes as
 * a whole download (no delta from 1.0.0).
 */
async function fixture() {
  const dir = await Deno.makeTempDir({ prefix: "edged-update-bounded-" });
  const repo = join(dir, "repo");
  const files = await publishReleases(repo, dir, ["1.0.0", "2.0.0", "3.0.0"]);
  const dataDir = join(dir, "data");
  await installTwoSlots(dataDir, { file: files["2.0.0"], version: "2.0.0" }, {
    file: files["1.0.0"],
    version: "1.0.0",
  });
  return { dir, repo, files, dataDir, root: join(repo, "metadata", "1.root.json") };
}

/** Durable bytes of the partial download of `sha256`, 0 when none. */
async function partial(dataDir: string, sha256: string): Promise<number> {
  const rec = join(dataDir, "update", "downloads", `${sha256}-edged.part.json`);
  return JSON.parse(await Deno.readTextFile(rec).catch(() => '{"durable":0}')).durable;
}

Deno.test({
  name:
    "M3 in process: check and rollback do not wait behind a 600 B/s download; rollback cancels it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const f = await fixture();
    const server = serveRepo(f.repo, { targetRate: 600 });
    const restarts: string[] = [];
    const updater = new Updater({
      dataDir: f.dataDir,
      url: server.url,
      rootPath: f.root,
      triple: TRIPLE,
      deviceId: "bounded-device",
      factoryVersion: "0.0.0",
      requestRestart: (r) => restarts.push(r),
    });
    try {
      const apply = updater.apply();
      apply.catch(() => {});
      await waitFor("the download under way", () => Promise.resolve(updater.progress?.received));
      const check = await updater.check();
      assert.equal(check.available?.version, "3.0.0");
      assert.equal(updater.phase, "downloading", "the download still runs after the check");

      const s = await updater.rollback();
      assert.equal(s.active, "a");
      assert.equal(s.slots.a?.version, "2.0.0");
      await assert.rejects(apply, UpdateCancelledError);
      assert.deepEqual(restarts, ["rollback to 2.0.0"]);
      const kept = await partial(f.dataDir, await sha256Of(f.files["3.0.0"]));
      assert.ok(kept > 0, "the bytes that arrived are kept for the next attempt");
      // The version rolled back from is the new rollback target, intact.
      const target = await rollbackTarget(f.dataDir);
      assert.deepEqual([target?.version, target?.intact], ["1.0.0", true]);
    } finally {
      await updater.close();
      await server.close();
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "M3 and L5 in a running edged: check answers during a slow download, SIGTERM exits 0",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const f = await fixture();
    const server = serveRepo(f.repo, { targetRate: 600, stallMetadata: true });
    const env = {
      EDGED_UPDATE_URL: server.url,
      EDGED_UPDATE_ROOT: f.root,
      EDGED_UPDATE_AUTO_APPLY: "false",
      EDGED_UPDATE_TIMEOUT_S: "1",
      EDGED_SHUTDOWN_TIMEOUT_S: "5",
    };
    let edged: EdgedProcess | undefined;
    try {
      edged = await startEdged({ dataDir: f.dataDir, env });
      const e = edged;
      // L5: a metadata server that stalls after its headers fails the check
      // after update.timeout_s (1 s), not after a fixed 15 s.
      const stalled = await e.api("/api/v1/update/check", { method: "POST" });
      const body = await stalled.json();
      assert.equal(stalled.status, 502, JSON.stringify(body));
      assert.match(body.error.message, /no data for 1000 ms/);

      // M3: the release arrives at 600 B/s.
      server.mode.stallMetadata = false;
      const applying = e.api("/api/v1/update/apply?wait=1", { method: "POST" })
        .then(async (r) => ({ status: r.status, body: await r.json() }))
        .catch((err) => ({ status: 0, body: String(err) }));
      await waitFor("the download under way", async () => {
        const s = await (await e.api("/api/v1/update")).json();
        return s.progress?.received > 0;
      });
      const check = await e.api("/api/v1/update/check", {
        method: "POST",
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(check.status, 200);
      assert.equal((await check.json()).available?.version, "3.0.0");
      const status = await (await e.api("/api/v1/update")).json();
      assert.equal(status.phase, "downloading");

      // SIGTERM: the download stops, the waiting request gets its answer, exit 0.
      const code = await e.stop();
      assert.equal(code, 0, edged.lines.slice(-5).join("\n"));
      const answer = await applying;
      assert.equal(answer.status, 409, JSON.stringify(answer.body));
      assert.equal((answer.body as any).error.code, "update_cancelled");
      assert.ok(!edged.lines.some((l) => l.includes("shutdown took longer")));
      assert.ok((await partial(f.dataDir, await sha256Of(f.files["3.0.0"]))) > 0);
      edged = undefined;
    } finally {
      await edged?.stop("SIGKILL");
      await server.close();
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "M3 in a running edged: POST /rollback during a slow download answers and restarts",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const f = await fixture();
    const server = serveRepo(f.repo, { targetRate: 600 });
    let edged: EdgedProcess | undefined;
    try {
      edged = await startEdged({
        dataDir: f.dataDir,
        env: {
          EDGED_UPDATE_URL: server.url,
          EDGED_UPDATE_ROOT: f.root,
          EDGED_UPDATE_AUTO_APPLY: "false",
        },
      });
      const e = edged;
      const accepted = await e.api("/api/v1/update/apply", { method: "POST" });
      assert.equal(accepted.status, 202);
      await accepted.body?.cancel();
      await waitFor("the download under way", async () => {
        const s = await (await e.api("/api/v1/update")).json();
        return s.progress?.received > 0;
      });
      const res = await e.api("/api/v1/update/rollback", {
        method: "POST",
        signal: AbortSignal.timeout(5000),
      });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.rolled_back.to, "2.0.0");
      // edged asks its launcher for a restart into the rolled-back slot.
      assert.equal((await e.exited).code, 75);
      edged = undefined;
    } finally {
      await edged?.stop("SIGKILL");
      await server.close();
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "L6: a signed delta whose header announces more than the release is refused before it writes",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "edged-update-lying-delta-" });
    const repo = join(dir, "repo");
    const server = serveRepo(repo);
    try {
      await Repository.init(repo);
      const rel = (v: string) => join(dir, `edged-${v}`);
      for (const [v, seed] of [["1.0.0", 1], ["2.0.0", 2]] as const) {
        await makeRelease(rel(v), v, { seed });
        await addRelease(await Repository.open(repo), rel(v), {
          triple: TRIPLE,
          version: v,
          deltas: 0,
        });
      }
      // A delta built (and signed) to produce 2.0.0 followed by 8 MiB: the
      // bytes before the digest check would all land on the device's disk.
      const old = await Deno.readFile(rel("1.0.0"));
      const release = await Deno.readFile(rel("2.0.0"));
      const longer = new Uint8Array(release.length + (8 << 20));
      longer.set(release);
      const r = await Repository.open(repo);
      await r.putTarget(`deltas/${TRIPLE}/1.0.0_to_2.0.0.bsdiff`, await bsdiff(old, longer), {
        kind: "delta",
        format: "BSDIFF40",
        triple: TRIPLE,
        from_version: "1.0.0",
        to_version: "2.0.0",
        from_sha256: await sha256Of(rel("1.0.0")),
        to_sha256: await sha256Of(rel("2.0.0")),
      });
      await r.publishTargets();
      const updater = new Updater({
        dataDir: join(dir, "data"),
        url: server.url,
        rootPath: join(repo, "metadata", "1.root.json"),
        triple: TRIPLE,
        deviceId: "lying-delta-device",
        factoryVersion: "1.0.0",
        factoryBinary: rel("1.0.0"),
      });
      const res = await updater.apply();
      assert.equal(res.outcome, "installed");
      assert.equal(res.method, "full");
      assert.match(
        res.deltaFallback!,
        new RegExp(`header new file size ${longer.length} exceeds the limit of ${release.length}`),
      );
      assert.equal(
        await sha256Of(updater.store.binaryPath(res.slot!)),
        await sha256Of(rel("2.0.0")),
      );
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
