/**
 * A failed update never costs the device its way back (issue 19): a device
 * running 2.0.0 with 1.0.0 kept as its rollback target tries to take 3.0.0
 * and fails in each way an update fails in the field: the server gives up,
 * the bytes do not match the signed metadata, the disk is full before the
 * download, the disk fills up during it. After each, `state.json` is byte
 * for byte what it was and both slots hold their bytes; then 3.0.0 installs
 * into the slot that held 1.0.0, and 2.0.0 becomes the rollback target.
 *
 * The full-disk steps put the data directory on a small tmpfs (root only);
 * without the privilege to mount one they are skipped and say so.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { statfs } from "node:fs/promises";
import {
  DiskSpaceError,
  TufError,
  UpdateDownloadError,
  Updater,
  type UpdaterOptions,
  UpdateVerificationError,
} from "../../ota/mod.ts";
import {
  installTwoSlots,
  publishReleases,
  rollbackTarget,
  sha256Of,
  TRIPLE,
} from "./_update_helpers.ts";
import { serveRepo } from "./_repo_server.ts";

/** Mounts a tmpfs of `mib` MiB on `dir`; false when this process may not. */
async function mountTmpfs(dir: string, mib: number): Promise<boolean> {
  const r = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${mib}m`, "tmpfs", dir],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => ({ success: false }));
  return r.success;
}

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return Number(s.bavail) * Number(s.bsize);
}

async function flipByte(path: string, at = 100): Promise<void> {
  const data = await Deno.readFile(path);
  data[at] ^= 0xff;
  await Deno.writeFile(path, data);
}

/** The target file of `sha256` under the repository's targets/ (consistent snapshots). */
async function targetFile(repo: string, sha256: string): Promise<string> {
  const walk = async (d: string): Promise<string | undefined> => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) {
        const f = await walk(p);
        if (f) return f;
      } else if (e.name.startsWith(`${sha256}.`)) return p;
    }
  };
  const f = await walk(join(repo, "targets"));
  if (!f) throw new Error(`no target file for ${sha256}`);
  return f;
}

Deno.test({
  name:
    "a failed update (network, digest, full disk) leaves state.json and both slots as they were",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "edged-update-keep-" });
    const repo = join(dir, "repo");
    // Larger than bspatch's 1 MiB piece, so the patch writes more than once.
    const files = await publishReleases(repo, dir, ["1.0.0", "2.0.0", "3.0.0"], 1100 << 10);
    const rel = (v: string) => files[v];
    const dataDir = join(dir, "data");
    await Deno.mkdir(dataDir);
    const tmpfs = await mountTmpfs(dataDir, 24);
    const server = serveRepo(repo);
    await installTwoSlots(dataDir, { file: rel("1.0.0"), version: "1.0.0" }, {
      file: rel("2.0.0"),
      version: "2.0.0",
    });
    const update = join(dataDir, "update");
    const updater = (o: Partial<UpdaterOptions> = {}) =>
      new Updater({
        dataDir,
        url: server.url,
        rootPath: join(repo, "metadata", "1.root.json"),
        triple: TRIPLE,
        deviceId: "keep-device",
        factoryVersion: "0.0.0",
        backoffMs: 1,
        retries: 1,
        ...o,
      });
    const snapshot = async () => ({
      state: await Deno.readTextFile(join(update, "state.json")),
      a: await sha256Of(join(update, "slots", "a", "edged")),
      b: await sha256Of(join(update, "slots", "b", "edged")),
    });
    const before = await snapshot();
    const unchanged = async () => {
      assert.deepEqual(await snapshot(), before, "state.json and both slots as they were");
      const target = await rollbackTarget(dataDir);
      assert.deepEqual(
        { slot: target?.slot, version: target?.version, intact: target?.intact },
        { slot: "a", version: "1.0.0", intact: true },
      );
    };
    const release3 = await sha256Of(rel("3.0.0"));
    try {
      await t.step("the server refuses the downloads: a network failure", async () => {
        server.mode.targetStatus = 503;
        try {
          const u = updater();
          const err = await u.apply().catch((e) => e);
          assert.ok(err instanceof UpdateDownloadError, String(err));
          assert.ok(!(err instanceof UpdateVerificationError));
          assert.equal((await u.status()).phase, "failed");
          await unchanged();
        } finally {
          server.mode.targetStatus = null;
        }
      });

      await t.step(
        "the bytes do not match the signed metadata: a verification failure",
        async () => {
          const files = [await targetFile(repo, release3)];
          for await (const e of Deno.readDir(join(repo, "targets", "deltas", TRIPLE))) {
            if (e.name.endsWith("2.0.0_to_3.0.0.bsdiff")) {
              files.push(join(repo, "targets", "deltas", TRIPLE, e.name));
            }
          }
          assert.equal(files.length, 2, "the release and its delta from 2.0.0");
          for (const f of files) await flipByte(f);
          try {
            const tampered = await sha256Of(files[0]);
            const err = await updater().apply().catch((e) => e);
            assert.ok(err instanceof UpdateVerificationError, String(err));
            assert.ok(!(err instanceof UpdateDownloadError) && !(err instanceof TufError));
            assert.equal(err.target, `releases/${TRIPLE}/3.0.0/edged`);
            assert.deepEqual(err.expected, {
              sha256: release3,
              length: (await Deno.stat(rel("3.0.0"))).size,
            });
            assert.equal(err.actual.sha256, tampered);
            assert.ok(err.message.includes(release3) && err.message.includes(tampered));
            await unchanged();
          } finally {
            for (const f of files) await flipByte(f);
          }
        },
      );

      await t.step({
        name: "the disk is full before the download",
        ignore: !tmpfs,
        async fn() {
          const filler = join(dataDir, "filler");
          // Less than the 16 MiB kept free beyond a download.
          await Deno.writeFile(filler, new Uint8Array((await freeBytes(dataDir)) - (8 << 20)));
          try {
            const err = await updater().apply().catch((e) => e);
            assert.ok(err instanceof DiskSpaceError, String(err));
            await unchanged();
          } finally {
            await Deno.remove(filler);
          }
        },
      });

      await t.step({
        name: "the disk fills up while the patch writes the new release",
        ignore: !tmpfs,
        async fn() {
          const filler = join(dataDir, "filler");
          // Something else takes the space once the first piece is written.
          const u = updater({
            onStep: (s) => {
              if (s !== "patching") return;
              const f = Deno.openSync(filler, { write: true, create: true });
              try {
                const block = new Uint8Array(1 << 20);
                while (true) f.writeSync(block);
              } catch {
                /* full */
              } finally {
                f.close();
              }
            },
          });
          try {
            const err = await u.apply().catch((e) => e);
            assert.ok(err instanceof DiskSpaceError, String(err));
            assert.equal(
              (err.cause as { code?: string })?.code,
              "ENOSPC",
              "the write itself found the disk full",
            );
            await unchanged();
          } finally {
            await Deno.remove(filler).catch(() => {});
          }
        },
      });

      await t.step("then 3.0.0 installs over 1.0.0, and 2.0.0 is the rollback target", async () => {
        const r = await updater().apply();
        assert.equal(r.outcome, "installed");
        assert.equal(r.slot, "a");
        assert.equal(await sha256Of(join(update, "slots", "a", "edged")), release3);
        const target = await rollbackTarget(dataDir);
        assert.deepEqual(
          { slot: target?.slot, version: target?.version, intact: target?.intact },
          { slot: "b", version: "2.0.0", intact: true },
        );
      });
    } finally {
      await server.close();
      if (tmpfs) {
        await new Deno.Command("umount", { args: [dataDir] }).output();
      } else console.error("(full-disk steps skipped: cannot mount a tmpfs here)");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
