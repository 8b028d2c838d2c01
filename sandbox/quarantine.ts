/**
 * Fault accounting: a module that faults `faultLimit` times in a row is
 * quarantined for a back-off that doubles per quarantine (up to 5 minutes);
 * once released it is on probation, so one more fault quarantines it again.
 * Its end is kept on the monotonic clock: setting the system clock (NTP after
 * a boot without a real-time clock) neither prolongs nor shortens it.
 *
 * @module
 */
import { getLogger } from "../lib/mod.ts";
import type { FaultKind } from "./errors.ts";
import type { ModuleRecord } from "./module_record.ts";

const log = getLogger(["edged", "modules"]);

/** Longest quarantine. */
const MAX_BACKOFF_MS = 300_000;

/** The quarantine rules of one module host. */
export class Quarantine {
  /** Rules for `faultLimit` faults in a row and a first back-off of `quarantineMs`. */
  constructor(readonly faultLimit: number, readonly quarantineMs: number) {}

  /** Ends an expired quarantine; the module goes on, on probation. */
  release(r: ModuleRecord): void {
    if (r.state === "quarantined" && performance.now() >= r.until) {
      r.state = "running";
      r.consecutive = this.faultLimit - 1;
      log.info("module {name} released from quarantine", { name: r.manifest.name });
    }
  }

  /** Books a call that completed: the fault streak and the back-off start over. */
  ok(r: ModuleRecord): void {
    r.consecutive = 0;
    r.backoffMs = this.quarantineMs;
  }

  /** Books a fault: statistics, the log, and a quarantine at the limit. */
  fault(r: ModuleRecord, error: { kind: FaultKind; message: string }): void {
    r.s.errors++;
    r.s.faults[error.kind]++;
    r.s.last_error = { ...error, at: new Date().toISOString() };
    r.consecutive++;
    log.warn("module {name} fault ({kind}): {message}", { name: r.manifest.name, ...error });
    if (r.consecutive >= this.faultLimit) {
      r.state = "quarantined";
      r.until = performance.now() + r.backoffMs;
      log.warn("module {name} quarantined for {ms} ms", { name: r.manifest.name, ms: r.backoffMs });
      r.backoffMs = Math.min(r.backoffMs * 2, MAX_BACKOFF_MS);
      r.consecutive = 0;
    }
  }
}
