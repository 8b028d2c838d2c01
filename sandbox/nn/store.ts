/**
 * Installed models on disk, beside the modules:
 * `<data_dir>/models/<name>/<dir>/{model.onnx,model.json}` and
 * `<data_dir>/models/<name>/current` naming the version directory in use.
 * `model.json` records what the engine reported when the model was
 * installed (inputs, outputs) and the operator's settings. `current` is
 * replaced by rename after the version directory is fsynced, so a power cut
 * leaves the old or the new version installed, never a mix.
 *
 * @module
 */

import { join } from "node:path";
import { syncDir, writeFileAtomic } from "../../lib/mod.ts";
import type { ComputeCost, TensorSpec } from "./channel.ts";

/** An installed model's record (`model.json`; the API's answer). */
export interface ModelRecord {
  name: string;
  /** The operator's or the release's version label, if any. */
  version: string | null;
  /** Lowercase hex SHA-256 of the ONNX file. */
  sha256: string;
  size: number;
  /** Largest number of elements of any input or output tensor. */
  max_elements: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** One inference measured at install (what `compute` is charged); null when not measurable. */
  cost: ComputeCost | null;
  installed_at: string;
}

const MODEL_FILE = "model.onnx";
const RECORD_FILE = "model.json";
const enc = new TextEncoder();

async function writeNew(path: string, data: Uint8Array): Promise<void> {
  using f = await Deno.open(path, { write: true, createNew: true });
  let off = 0;
  while (off < data.length) off += await f.write(data.subarray(off));
  await f.sync();
}

/** Reads and writes installed models under one directory. */
export class ModelStore {
  constructor(readonly dir: string) {}

  /**
   * Stores a model version and makes it current, in a fresh directory
   * (never one `current` may name), then removes older versions.
   */
  async save(record: ModelRecord, bytes: Uint8Array): Promise<void> {
    const modelDir = join(this.dir, record.name);
    await Deno.mkdir(modelDir, { recursive: true });
    const versionName = `${record.sha256.slice(0, 16)}.${crypto.randomUUID().slice(0, 8)}`;
    const versionDir = join(modelDir, versionName);
    await Deno.mkdir(versionDir);
    await writeNew(join(versionDir, MODEL_FILE), bytes);
    await writeNew(
      join(versionDir, RECORD_FILE),
      enc.encode(JSON.stringify(record, null, 2) + "\n"),
    );
    await syncDir(versionDir);
    await syncDir(modelDir);
    await writeFileAtomic(join(modelDir, "current"), enc.encode(versionName));
    for await (const e of Deno.readDir(modelDir)) {
      if (e.name === versionName || e.name === "current") continue;
      await Deno.remove(join(modelDir, e.name), { recursive: true }).catch(() => {});
    }
  }

  async #current(name: string): Promise<string | undefined> {
    try {
      return join(
        this.dir,
        name,
        (await Deno.readTextFile(join(this.dir, name, "current"))).trim(),
      );
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
  }

  /** The record of model `name`, or undefined when it is not installed. */
  async get(name: string): Promise<ModelRecord | undefined> {
    const dir = await this.#current(name);
    if (!dir) return undefined;
    return JSON.parse(await Deno.readTextFile(join(dir, RECORD_FILE))) as ModelRecord;
  }

  /** The path of model `name`'s ONNX file, or undefined when it is not installed. */
  async file(name: string): Promise<string | undefined> {
    const dir = await this.#current(name);
    return dir ? join(dir, MODEL_FILE) : undefined;
  }

  /** The ONNX bytes of model `name`, or undefined when it is not installed. */
  async bytes(name: string): Promise<Uint8Array | undefined> {
    const dir = await this.#current(name);
    return dir ? await Deno.readFile(join(dir, MODEL_FILE)) : undefined;
  }

  /** Every installed model's record, by name; half-written installs are cleaned up. */
  async list(): Promise<ModelRecord[]> {
    const out: ModelRecord[] = [];
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(this.dir));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return out;
      throw err;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith(".removed-")) {
        await Deno.remove(join(this.dir, e.name), { recursive: true }).catch(() => {});
        continue;
      }
      if (!e.isDirectory) continue;
      const record = await this.get(e.name).catch(() => undefined);
      if (record) out.push(record);
      else if (!(await this.#current(e.name).catch(() => "unreadable"))) {
        // `current` is written last: without it the first install never completed.
        await Deno.remove(join(this.dir, e.name), { recursive: true }).catch(() => {});
      }
    }
    return out;
  }

  /** Removes model `name`; false when it was not installed. */
  async remove(name: string): Promise<boolean> {
    const modelDir = join(this.dir, name);
    const trash = join(this.dir, `.removed-${name}-${crypto.randomUUID()}`);
    try {
      await Deno.rename(modelDir, trash);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
    await syncDir(this.dir);
    await Deno.remove(trash, { recursive: true });
    return true;
  }
}
