/**
 * The A/B slot layout and the durable boot state.
 *
 *     <data_dir>/update/
 *       state.json          which slot is active, which one is kept, the trial
 *       slots/a/edged       slot A's executable
 *       slots/b/edged       slot B's executable
 *       current -> slots/b/edged   (derived from state.json at each boot, for unit files)
 *       downloads/          partial and complete downloads with progress records;
 *                           <sha256>-edged is a verified release staged for a slot
 *       downloads/modules/  module downloads (kept apart from the release's)
 *       tuf/                trusted TUF metadata
 *
 * `state.json` is the single source of truth and is only ever replaced by
 * rename (temp file, fsync, rename, fsync directory), so every switch and
 * every boot-counter increment is atomic and survives power loss.
 *
 * An install never writes into a slot that `state.json` still names: the new
 * release is staged and verified beside the slots, then one replacement of
 * `state.json` makes it the active slot (the old inactive slot's record is
 * dropped at that instant, and the old active slot becomes the rollback
 * target), and only then is the staged file renamed onto the slot's
 * executable. A crash between the two renames leaves a state whose active
 * slot still holds its old bytes next to the staged release;
 * {@linkcode SlotStore.finishInstall} (run at every boot) completes the
 * rename.
 *
 * @module
 */
import { UpdateStateError } from "./errors.ts";
// Not node:path: the launcher loads no node: module (lib/path.ts).
import {
  executableMode,
  joinPath as join,
  sha256File,
  syncDir,
  writeFileAtomic,
} from "../../lib/mod.ts";

/** The two slots. */
export type SlotName = "a" | "b";

/** What a slot holds. */
export interface SlotInfo {
  /** Release version (from the target's custom metadata). */
  version: string;
  /** Lower-case hex SHA-256 of the slot's executable. */
  sha256: string;
  /** ISO time of the install. */
  installed_at: string;
  /** How it got there. */
  source: "factory" | "delta" | "full" | "local";
}

/** A version that was switched to and has not yet proven healthy. */
export interface Trial {
  /** The slot on trial (always the active one while the trial lasts). */
  slot: SlotName;
  /** Its version. */
  version: string;
  /** Starts so far, counted before each start (the boot counter). */
  attempts: number;
  /** ISO time of the switch. */
  since: string;
}

/** The last automatic or manual rollback. */
export interface RollbackRecord {
  /** Version rolled back from. */
  from: string;
  /** Version rolled back to. */
  to: string;
  /** Why (deadline, boot counter, damaged slot, operator). */
  reason: string;
  /** ISO time. */
  at: string;
}

/** Contents of `state.json`. */
export interface BootState {
  /** Layout version of this file. */
  format: 1;
  /** The slot to start; null means the executable edged was installed as (factory). */
  active: SlotName | null;
  /** The slot kept to roll back to. */
  previous: SlotName | null;
  /** What each slot holds; a slot being written is absent. */
  slots: Partial<Record<SlotName, SlotInfo>>;
  /** The unconfirmed version, if any. */
  trial: Trial | null;
  /** The last rollback, if any. */
  last_rollback: RollbackRecord | null;
  /** Versions rolled back from; checks do not offer them again. */
  rejected?: string[];
}

/** A fresh state: nothing installed, the factory executable runs. */
export function emptyState(): BootState {
  return { format: 1, active: null, previous: null, slots: {}, trial: null, last_rollback: null };
}

/** The other slot. */
export function otherSlot(s: SlotName): SlotName {
  return s === "a" ? "b" : "a";
}

/**
 * Paths and durable state of the update area in a data directory. One
 * process at a time changes it (the runtime, or the supervisor between the
 * runtime's runs).
 */
export class SlotStore {
  /** `<data_dir>/update`. */
  readonly root: string;
  /** Read-modify-write cycles of this process, one at a time. */
  #writing: Promise<unknown> = Promise.resolve();

  /** Creates the store for `dataDir` (nothing is touched until used). */
  constructor(dataDir: string) {
    this.root = join(dataDir, "update");
  }

  /** Path of `state.json`. */
  get statePath(): string {
    return join(this.root, "state.json");
  }
  /** Directory of partial and complete downloads. */
  get downloadsDir(): string {
    return join(this.root, "downloads");
  }
  /** Directory of module downloads. */
  get moduleDownloadsDir(): string {
    return join(this.downloadsDir, "modules");
  }
  /** Where the verified release with digest `sha256` waits for its slot. */
  stagedPath(sha256: string): string {
    return join(this.downloadsDir, `${sha256}-edged`);
  }
  /** Directory of trusted TUF metadata. */
  get tufDir(): string {
    return join(this.root, "tuf");
  }
  /** The `current` symlink. */
  get currentLink(): string {
    return join(this.root, "current");
  }
  /** Directory of a slot. */
  slotDir(s: SlotName): string {
    return join(this.root, "slots", s);
  }
  /** Executable of a slot. */
  binaryPath(s: SlotName): string {
    return join(this.slotDir(s), "edged");
  }

  /** Creates the directories. */
  async ensure(): Promise<void> {
    const dirs = [this.moduleDownloadsDir, this.tufDir, this.slotDir("a"), this.slotDir("b")];
    for (const d of dirs) {
      await Deno.mkdir(d, { recursive: true, mode: 0o700 });
    }
  }

  /** Reads the state; a missing file is the empty state. */
  async read(): Promise<BootState> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.statePath);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return emptyState();
      throw err;
    }
    let s: BootState;
    try {
      s = JSON.parse(text);
    } catch (cause) {
      // Only rename ever replaces the file, so this is damage from outside.
      throw new UpdateStateError(`${this.statePath} is not valid JSON`, { cause });
    }
    if (s?.format !== 1) {
      throw new UpdateStateError(`${this.statePath}: unknown format ${JSON.stringify(s?.format)}`);
    }
    return s;
  }

  /** Replaces the state atomically and durably. */
  async write(s: BootState): Promise<void> {
    await Deno.mkdir(this.root, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.statePath, new TextEncoder().encode(JSON.stringify(s, null, 2)));
  }

  /**
   * Reads, changes and writes the state; `fn` returns the new state. Calls
   * of this process run one after the other, so concurrent operations (a
   * check naming the running version, a rollback, a confirmation) never
   * overwrite each other's change.
   */
  update(fn: (s: BootState) => BootState | Promise<BootState>): Promise<BootState> {
    const run = this.#writing.then(async () => {
      const next = await fn(await this.read());
      await this.write(next);
      return next;
    });
    this.#writing = run.catch(() => {});
    return run;
  }

  /**
   * Moves an unreadable `state.json` aside (kept for inspection) so the next
   * boot starts from the empty state: the factory executable.
   */
  async quarantineState(): Promise<void> {
    try {
      await this.read();
    } catch (err) {
      if (!(err instanceof UpdateStateError)) throw err;
      await Deno.rename(this.statePath, `${this.statePath}.bad-${Date.now()}`);
      await syncDir(this.root);
    }
  }

  /** Points the `current` symlink at the active slot (or removes it), atomically. */
  async linkCurrent(s: BootState): Promise<void> {
    const tmp = `${this.currentLink}.tmp-${crypto.randomUUID()}`;
    if (s.active === null) {
      await Deno.remove(this.currentLink).catch(() => {});
      return;
    }
    await Deno.symlink(join("slots", s.active, "edged"), tmp);
    await Deno.rename(tmp, this.currentLink);
    await syncDir(this.root);
  }

  /** True when the slot's executable exists and has the digest the state records. */
  async slotIntact(s: BootState, slot: SlotName): Promise<boolean> {
    const info = s.slots[slot];
    if (!info) return false;
    return (await sha256File(this.binaryPath(slot))) === info.sha256;
  }

  /**
   * Completes an install that a crash interrupted between the switch and
   * the rename onto the slot: for each slot the state names whose
   * executable does not have the recorded digest, a staged file that does is
   * renamed into place. Returns the slots completed.
   */
  async finishInstall(s: BootState): Promise<SlotName[]> {
    const done: SlotName[] = [];
    for (const slot of new Set([s.active, s.previous])) {
      if (slot === null || !s.slots[slot] || await this.slotIntact(s, slot)) continue;
      const staged = this.stagedPath(s.slots[slot]!.sha256);
      if ((await sha256File(staged)) !== s.slots[slot]!.sha256) continue;
      await Deno.chmod(staged, executableMode());
      await Deno.rename(staged, this.binaryPath(slot));
      await syncDir(this.slotDir(slot));
      await syncDir(this.downloadsDir);
      done.push(slot);
    }
    return done;
  }

  /**
   * Removes temporary files a crash may have left in the slot directories
   * and the downloads (dot-files; partial downloads are kept for a resume).
   */
  async cleanTemporaries(): Promise<void> {
    const dirs = [this.slotDir("a"), this.slotDir("b"), this.downloadsDir];
    for (const dir of [...dirs, this.moduleDownloadsDir]) {
      try {
        for await (const e of Deno.readDir(dir)) {
          if (e.name.startsWith(".")) await Deno.remove(join(dir, e.name));
        }
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
  }
}

/**
 * The state after rolling back from the active slot to the previous one.
 * An automatic rollback (`keepFrom` false) forgets the failed slot; a manual
 * one keeps it as the previous slot, so an operator can go forward again.
 */
export function rolledBack(
  s: BootState,
  reason: string,
  options: { keepFrom?: boolean; now?: Date } = {},
): BootState {
  const { keepFrom = false, now = new Date() } = options;
  if (s.previous === null || !s.slots[s.previous]) {
    throw new UpdateStateError("no previous slot to roll back to");
  }
  const from = s.active ? (s.slots[s.active]?.version ?? "?") : "factory";
  return {
    ...s,
    active: s.previous,
    // A failed slot stays on disk but is never chosen again without a new install.
    previous: keepFrom ? s.active : null,
    trial: null,
    rejected: [...new Set([...(s.rejected ?? []), from])].slice(-20),
    last_rollback: {
      from,
      to: s.slots[s.previous]!.version,
      reason,
      at: now.toISOString(),
    },
  };
}
