/**
 * Boot-time decisions on the slot state, shared by `edged run --supervise`
 * and `edged update boot` (a unit file's ExecStartPre): adopt the factory
 * executable as slot A, complete an install a crash interrupted after its
 * switch, count a trial start (the boot counter), roll back after too many
 * failed starts or a damaged slot, and confirm a healthy one.
 *
 * @module
 */
import { copyFileAtomic, getLogger, sha256File } from "../../lib/mod.ts";
import { type BootState, rolledBack, type SlotName, type SlotStore, type Trial } from "./state.ts";

const log = getLogger(["edged", "update", "boot"]);

/** Options of {@linkcode prepareBoot}. */
export interface PrepareBootOptions {
  /** Failed starts of a trial version before it is rolled back. */
  maxBootAttempts: number;
  /** Executable to adopt into slot A when nothing is installed yet (absent: run as is). */
  factoryBinary?: string;
  /** Version of the factory executable. */
  factoryVersion: string;
  /**
   * The trial as counted for a start that never ran: its edged found the data
   * directory locked by another edged and exited before doing anything (the
   * launcher). That start is taken off the count when the trial is still the
   * same one (slot, version and switch time).
   */
  notStarted?: Trial;
}

/** What to start. */
export interface BootDecision {
  /** The slot to start, or null for the factory executable. */
  slot: SlotName | null;
  /** The executable to start (undefined: the factory command). */
  binary?: string;
  /** True when this start is a trial of an unconfirmed version. */
  trial: boolean;
  /** Set when this call rolled back. */
  rolledBack?: string;
  /** The state after this step. */
  state: BootState;
}

/**
 * Decides what to start and records it durably before the start, so a crash
 * of the started process is counted even if nothing else runs afterwards.
 */
export async function prepareBoot(
  store: SlotStore,
  options: PrepareBootOptions,
): Promise<BootDecision> {
  await store.ensure();
  await store.cleanTemporaries();
  let s = await store.read();
  let rolled: string | undefined;

  if (s.active === null && options.factoryBinary) {
    // First start under a launcher: the running executable becomes slot A, so
    // there is always a known-good slot to fall back to and a digest for deltas.
    const sha = (await sha256File(options.factoryBinary))!;
    await copyFileAtomic(options.factoryBinary, store.binaryPath("a"));
    s = {
      ...s,
      active: "a",
      slots: {
        ...s.slots,
        a: {
          version: options.factoryVersion,
          sha256: sha,
          installed_at: new Date().toISOString(),
          source: "factory",
        },
      },
    };
    await store.write(s);
    log.info("adopted {binary} ({version}) as slot a", {
      binary: options.factoryBinary,
      version: options.factoryVersion,
    });
  }

  for (const slot of await store.finishInstall(s)) {
    log.info("completed the install of {version} into slot {slot} (interrupted after the switch)", {
      version: s.slots[slot]!.version,
      slot,
    });
  }

  if (s.active !== null && !(await store.slotIntact(s, s.active))) {
    // A damaged or missing active executable: never start it.
    const reason = `slot ${s.active} does not match its recorded SHA-256`;
    s = rolledBack(s, reason);
    rolled = reason;
    await store.write(s);
    log.error("rolled back: {reason}", { reason });
  }

  if (s.trial && s.trial.slot === s.active) {
    const n = options.notStarted;
    const attempts = n && n.slot === s.trial.slot && n.version === s.trial.version &&
        n.since === s.trial.since && s.trial.attempts > 0
      ? s.trial.attempts - 1
      : s.trial.attempts;
    if (attempts >= options.maxBootAttempts) {
      const reason = `${s.trial.version} did not confirm a healthy start in ${attempts} ` +
        `attempts (max_boot_attempts ${options.maxBootAttempts})`;
      s = rolledBack(s, reason);
      rolled = reason;
      log.error("rolled back: {reason}", { reason });
    } else {
      s = { ...s, trial: { ...s.trial, attempts: attempts + 1 } };
    }
    await store.write(s);
  } else if (s.trial) {
    s = { ...s, trial: null };
    await store.write(s);
  }
  await store.linkCurrent(s);
  return {
    slot: s.active,
    binary: s.active ? store.binaryPath(s.active) : undefined,
    trial: s.trial !== null,
    rolledBack: rolled,
    state: s,
  };
}

/**
 * Marks the trial of `slot` as confirmed (healthy): the one confirmation
 * step, taken by the running version's updater once it is ready (see
 * `Updater.confirm`). Returns false when `slot` is not the active trial.
 */
export async function confirmBoot(store: SlotStore, slot: SlotName | null): Promise<boolean> {
  const s = await store.read();
  if (!s.trial || s.trial.slot !== slot || s.active !== slot) return false;
  // Through update(): a check of this process may be changing the state too.
  let confirmed = false;
  await store.update((st) => {
    if (!st.trial || st.trial.slot !== slot || st.active !== slot) return st;
    confirmed = true;
    return { ...st, trial: null };
  });
  return confirmed;
}
