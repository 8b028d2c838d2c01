/**
 * `edged run --supervise`: a launcher for devices without a service manager
 * that understands the update protocol (and the ExecStart of the shipped
 * systemd unit). It starts the active slot's executable as a child and:
 *
 * - counts each start of an unconfirmed (trial) version in `state.json`
 *   before the start (the boot counter), and rolls back when the count
 *   reaches `max_boot_attempts`;
 * - rolls back when a trial is still unconfirmed `boot_deadline_s` (plus a
 *   grace period for the child's own check) after its start, and stops it;
 * - starts the child again at once when it exits with 75 (EX_TEMPFAIL:
 *   "restart me into the active slot", after an install or a rollback);
 * - restarts a confirmed version that crashed with back-off (1 s doubling
 *   to 30 s), and exits with the child's code on a clean stop or a
 *   configuration error (2), which no restart can fix;
 * - forwards SIGTERM/SIGINT to the child and exits when it has;
 * - ties the child's life to its own: the child's stdin is a pipe the
 *   launcher never writes to, and {@linkcode LAUNCHER_ENV} tells the child to
 *   shut down (as on SIGTERM) when that pipe reaches end of file, which
 *   happens when the launcher is gone however it ended (kill -9, the OOM
 *   killer), so no orphan keeps the data directory locked;
 * - starts nothing while another edged holds the data directory's lock
 *   (`runtime/lock.ts`): it waits for it with back-off (0.5 s doubling to
 *   5 s), and a child that found the directory locked (exit 73, or 2 from
 *   a build that predates 73 while the lock is still held) is not counted
 *   as a start of a trial, so a good release is never rolled back for it.
 *   Still locked after `lockWaitMs`, the launcher exits 2, as a second
 *   edged on the directory does.
 *
 * The launcher itself is the executable installed as the service (the
 * factory build); like a boot loader it is not replaced by updates.
 *
 * @module
 */
import { type BootDecision, prepareBoot } from "./boot.ts";
import { emptyState, rolledBack, SlotStore, type Trial } from "./state.ts";
import { sleep } from "./token_bucket.ts";
import { EXIT, getLogger } from "../../lib/mod.ts";
import { assertUnlocked, DataDirLockedError } from "../../runtime/start.ts";
import { LAUNCHER_ENV } from "./launcher.ts";

const log = getLogger(["edged", "supervisor"]);

/** Options of {@linkcode supervise}. */
export interface SuperviseOptions {
  /** Absolute data directory. */
  dataDir: string;
  /** Arguments after `run` for the child (`--data-dir` etc., without `--supervise`). */
  runArgs: string[];
  /** Command that starts the factory build when no slot is active (no `run`). */
  factoryCommand: string[];
  /** Executable adopted as slot A on the first start, if known. */
  factoryBinary?: string;
  /** Version of the factory build. */
  factoryVersion: string;
  /** Starts of a trial before it is rolled back. */
  maxBootAttempts: number;
  /** Time a trial has to confirm itself. */
  bootDeadlineMs: number;
  /** Extra time after the deadline before the launcher acts. @default {5000} */
  graceMs?: number;
  /**
   * How long one start waits for another edged to release the data
   * directory before the launcher gives up (exit 2). @default {30000}
   */
  lockWaitMs?: number;
  /** Stops the child and the launcher (tests); signals do the same. */
  signal?: AbortSignal;
  /** Handle SIGTERM/SIGINT. @default {true} */
  handleSignals?: boolean;
}

/** Runs the launcher loop; resolves with the exit code for the launcher. */
export async function supervise(options: SuperviseOptions): Promise<number> {
  const { graceMs = 5000, lockWaitMs = 30000, handleSignals = true } = options;
  const store = new SlotStore(options.dataDir);
  let child: Deno.ChildProcess | undefined;
  let stopping = false;
  // Ends the launcher's own waits (back-off, the lock) at once on a stop.
  const halt = new AbortController();
  const pause = (ms: number) => sleep(ms, halt.signal).catch(() => {});
  const stop = (sig: Deno.Signal) => {
    stopping = true;
    halt.abort();
    try {
      child?.kill(sig);
    } catch { /* already gone */ }
  };
  const onTerm = () => stop("SIGTERM");
  const onInt = () => stop("SIGINT");
  if (handleSignals) {
    Deno.addSignalListener("SIGTERM", onTerm);
    Deno.addSignalListener("SIGINT", onInt);
  }
  options.signal?.addEventListener("abort", onTerm);
  /** Waits until no edged holds the data directory; false after `lockWaitMs`. */
  const dataDirFree = async (): Promise<boolean> => {
    const since = performance.now();
    for (let delay = 500; !stopping; delay = Math.min(delay * 2, 5000)) {
      try {
        await assertUnlocked(options.dataDir);
        return true;
      } catch (err) {
        if (!(err instanceof DataDirLockedError)) throw err;
        const left = lockWaitMs - (performance.now() - since);
        if (left <= 0) {
          log.error("{message} after waiting {s} s; giving up", {
            message: err.message,
            s: lockWaitMs / 1000,
          });
          return false;
        }
        log.warning("{message}; waiting for it to exit, up to {s} s", {
          message: err.message,
          s: Math.ceil(left / 1000),
        });
        await pause(Math.min(delay, left));
      }
    }
    return true;
  };
  /** Whether a child that exited with `code` found the data directory locked. */
  const lockedOut = async (code: number): Promise<boolean> => {
    if (code === EXIT.DATA_DIR_BUSY) return true;
    // A build from before DATA_DIR_BUSY says 2, as for a bad configuration:
    // the lock, held by someone else now that the child is gone, tells them apart.
    if (code !== EXIT.USAGE) return false;
    return await assertUnlocked(options.dataDir).then(
      () => false,
      (err) => err instanceof DataDirLockedError,
    );
  };
  let crashDelay = 1000;
  // A trial start counted for a child that found the data directory locked.
  let notStarted: Trial | undefined;
  try {
    while (!stopping) {
      // The boot step changes state.json, which a running edged owns.
      if (!(await dataDirFree())) return EXIT.USAGE;
      if (stopping) break;
      let boot: BootDecision;
      try {
        boot = await prepareBoot(store, {
          maxBootAttempts: options.maxBootAttempts,
          factoryBinary: options.factoryBinary,
          factoryVersion: options.factoryVersion,
          notStarted,
        });
      } catch (err) {
        // Never leave the device without a running edged: the launcher's own
        // build is known to run (it is running), so it is the fallback.
        log.error("boot step failed ({error}); starting the launcher's own build", {
          error: String(err),
        });
        await store.quarantineState().catch(() => {});
        boot = { slot: null, trial: false, state: emptyState() };
      }
      notStarted = undefined;
      const cmd = boot.binary ? [boot.binary] : options.factoryCommand;
      const trialSlot = boot.trial ? boot.state.active : null;
      log.info("starting {what}{trial}", {
        what: boot.slot ? `slot ${boot.slot} (${boot.state.slots[boot.slot]!.version})` : cmd[0],
        trial: boot.trial ? ` on trial, attempt ${boot.state.trial!.attempts}` : "",
      });
      child = new Deno.Command(cmd[0], {
        args: [...cmd.slice(1), "run", ...options.runArgs],
        env: { [LAUNCHER_ENV]: "stdin" },
        // Never written to: its end of file tells the child the launcher is gone.
        stdin: "piped",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
      let deadline: ReturnType<typeof setTimeout> | undefined;
      let killTimer: ReturnType<typeof setTimeout> | undefined;
      let forced = false;
      if (trialSlot) {
        const c = child;
        deadline = setTimeout(async () => {
          const s = await store.read();
          if (!s.trial || s.trial.slot !== trialSlot || s.active !== trialSlot) return;
          const reason = `${s.trial.version} not confirmed healthy within ` +
            `${options.bootDeadlineMs / 1000} s`;
          log.error("rolling back: {reason}", { reason });
          forced = true;
          const next = rolledBack(s, reason);
          await store.write(next);
          await store.linkCurrent(next);
          try {
            c.kill("SIGTERM");
          } catch { /* gone */ }
          killTimer = setTimeout(() => {
            try {
              c.kill("SIGKILL");
            } catch { /* gone */ }
          }, graceMs);
        }, options.bootDeadlineMs + graceMs);
      }
      const status = await child.status;
      clearTimeout(deadline);
      clearTimeout(killTimer);
      await child.stdin.close().catch(() => {});
      child = undefined;
      if (stopping) return status.code;
      if (status.code === EXIT.RESTART || forced) {
        crashDelay = 1000;
        continue;
      }
      if (await lockedOut(status.code)) {
        // Not a failed start: the child exited before doing anything (an
        // orphan of an earlier launcher, or an edged started by hand, holds
        // the directory). The wait at the top of the loop backs off.
        if (boot.trial) notStarted = boot.state.trial!;
        log.warning("edged found the data directory locked by another edged{trial}", {
          trial: boot.trial ? `; not counted as a start of ${boot.state.trial!.version}` : "",
        });
        await pause(500);
        continue;
      }
      const s = await store.read();
      if (s.trial && s.trial.slot === s.active) {
        // An unconfirmed version that died: the boot counter decides.
        log.warning("trial of {version} exited with {code}", {
          version: s.trial.version,
          code: status.code,
        });
        continue;
      }
      if (status.code === 0 || status.code === 2) return status.code;
      log.error("edged exited with {code}; restarting in {ms} ms", {
        code: status.signal ? status.signal : status.code,
        ms: crashDelay,
      });
      await pause(crashDelay);
      crashDelay = Math.min(30000, crashDelay * 2);
    }
    return 0;
  } finally {
    if (handleSignals) {
      Deno.removeSignalListener("SIGTERM", onTerm);
      Deno.removeSignalListener("SIGINT", onInt);
    }
  }
}
