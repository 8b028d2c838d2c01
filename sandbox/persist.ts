/**
 * Installed modules on disk: `<dir>/<name>/<sha256>[.<suffix>]/{manifest.json,module.wasm}`
 * and `<dir>/<name>/current` naming the version directory in use. `current` is replaced by
 * rename after the version directory is fsynced, so a power cut leaves either
 * the old or the new version installed, never a mix.
 *
 * @module
 */

import { join } from "node:path";
import { syncDir } from "../lib/mod.ts";

/** One installed module as stored. */
export interface StoredModule {
  name: string;
  manifestJson: string;
  bytes: Uint8Array;
}

/**
 * Writes and fsyncs `path`, off the runtime's thread (Deno's blocking pool):
 * a module of megabytes takes tens of milliseconds to reach the disk.
 */
async function writeSynced(path: string, data: Uint8Array | string): Promise<void> {
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let off = 0;
  while (off < bytes.length) off += await f.write(bytes.subarray(off));
  await f.sync();
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function syncDirSync(path: string): void {
  try {
    const d = Deno.openSync(path, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  }
}

/** Reads and writes installed modules under one directory. */
export class ModuleStore {
  constructor(readonly dir: string) {}

  /**
   * Stores a version and makes it current. Each save writes a fresh directory
   * (the digest, or the digest plus a random suffix when that exists), never
   * one `current` may name: rewriting
   * the running version's files in place (the same bytes deployed again, or
   * a new manifest for the same bytes) would leave a torn module behind a
   * power cut.
   */
  async save(name: string, sha256: string, manifestJson: string, bytes: Uint8Array): Promise<void> {
    const moduleDir = join(this.dir, name);
    let versionName = sha256;
    if (exists(join(moduleDir, versionName))) {
      versionName = `${sha256}.${crypto.randomUUID().slice(0, 8)}`;
    }
    const versionDir = join(moduleDir, versionName);
    const tmp = join(moduleDir, `current.tmp-${crypto.randomUUID()}`);
    try {
      await Deno.mkdir(versionDir, { recursive: true });
      await writeSynced(join(versionDir, "module.wasm"), bytes);
      await writeSynced(join(versionDir, "manifest.json"), manifestJson);
      await syncDir(versionDir);
      await syncDir(moduleDir);
      await writeSynced(tmp, versionName);
      await Deno.rename(tmp, join(moduleDir, "current"));
    } catch (err) {
      // A failed save (a full disk) gives back what it wrote; `current` is untouched.
      for (const path of [tmp, versionDir]) {
        await Deno.remove(path, { recursive: true }).catch(() => {
          // not written, or the next save or start removes it
        });
      }
      throw err;
    }
    await syncDir(moduleDir);
    for (const e of Deno.readDirSync(moduleDir)) {
      if (e.name === versionName || e.name === "current") continue;
      Deno.removeSync(join(moduleDir, e.name), { recursive: true });
    }
  }

  /** Removes a module; no error when it is absent. */
  remove(name: string): void {
    const moduleDir = join(this.dir, name);
    const trash = join(this.dir, `.removed-${name}-${crypto.randomUUID()}`);
    try {
      Deno.renameSync(moduleDir, trash);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    syncDirSync(this.dir);
    Deno.removeSync(trash, { recursive: true });
  }

  /** Names and manifest texts of the installed modules (no wasm read); unreadable ones are left out. */
  manifests(): { name: string; manifestJson: string }[] {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(this.dir)];
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return [];
      throw err;
    }
    const out: { name: string; manifestJson: string }[] = [];
    for (const e of entries) {
      if (!e.isDirectory || e.name.startsWith(".removed-")) continue;
      try {
        const current = Deno.readTextFileSync(join(this.dir, e.name, "current")).trim();
        out.push({
          name: e.name,
          manifestJson: Deno.readTextFileSync(join(this.dir, e.name, current, "manifest.json")),
        });
      } catch {
        // No `current` (a torn first install) or unreadable: loadAll sorts it out.
      }
    }
    return out;
  }

  /** Every installed module; unreadable entries are returned as errors. */
  loadAll(): (StoredModule | { name: string; error: Error })[] {
    const out: (StoredModule | { name: string; error: Error })[] = [];
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(this.dir)];
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return out;
      throw err;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith(".removed-")) {
        Deno.removeSync(join(this.dir, e.name), { recursive: true });
        continue;
      }
      if (!e.isDirectory) continue;
      const moduleDir = join(this.dir, e.name);
      let current: string;
      try {
        current = Deno.readTextFileSync(join(moduleDir, "current")).trim();
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) {
          // `current` is written last: without it the first install never
          // completed (nor was it acknowledged), so there is no module.
          Deno.removeSync(moduleDir, { recursive: true });
        } else {
          out.push({ name: e.name, error: error as Error });
        }
        continue;
      }
      try {
        const sha = current;
        out.push({
          name: e.name,
          manifestJson: Deno.readTextFileSync(join(moduleDir, sha, "manifest.json")),
          bytes: Deno.readFileSync(join(moduleDir, sha, "module.wasm")),
        });
      } catch (error) {
        out.push({ name: e.name, error: error as Error });
      }
    }
    return out;
  }
}
