/**
 * Error classes of the sandbox, each with its one code and HTTP status
 * (`lib/errors.ts`).
 *
 * @module
 */
import { EdgedError, formatBytes } from "../lib/mod.ts";

/** A module or manifest was refused; `reasons` lists every problem found. */
export class ModuleValidationError extends EdgedError {
  override readonly code = "module_invalid";
  override readonly status = 422;
  /** Every reason the module was refused, each naming the rule and the value. */
  readonly reasons: string[];
  /** Builds the error; `details` of the answer are the reasons. */
  constructor(reasons: string[], options?: ErrorOptions) {
    super(`module refused: ${reasons.join("; ")}`, { ...options, details: reasons });
    this.reasons = reasons;
  }
}

/** Why a guest call stopped early. */
export type FaultKind = "fuel" | "trap" | "stack_overflow" | "memory" | "host" | "exit";

/** A guest call did not complete: trap, fuel exhaustion, stack overflow, limit or proc_exit. */
export class ModuleFault extends EdgedError {
  override readonly code = "module_fault";
  override readonly status = 500;
  /** What kind of fault it was. */
  readonly kind: FaultKind;
  /** Builds the error. */
  constructor(kind: FaultKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** The named module is not installed. */
export class ModuleNotFoundError extends EdgedError {
  override readonly code = "module_not_found";
  override readonly status = 404;
  /** Builds the error. */
  constructor(name: string) {
    super(`module "${name}" is not installed`);
  }
}

/** A message for a module that is quarantined after repeated faults. */
export class ModuleQuarantinedError extends EdgedError {
  override readonly code = "module_quarantined";
  override readonly status = 409;
  /** Builds the error. */
  constructor(name: string, until: number) {
    super(
      `module "${name}" is quarantined until ${
        new Date(until).toISOString()
      } after repeated faults`,
    );
  }
}

/** A message for an installed module that failed to load. */
export class ModuleFailedError extends EdgedError {
  override readonly code = "module_failed";
  override readonly status = 409;
  /** Builds the error. */
  constructor(name: string, reason: string) {
    super(`module "${name}" is installed but failed to load: ${reason}`);
  }
}

/** A message for an installed module that edged is still loading at start; retry shortly. */
export class ModuleLoadingError extends EdgedError {
  override readonly code = "module_loading";
  override readonly status = 503;
  /** Builds the error; HTTP answers carry `Retry-After: 1`. */
  constructor(name: string) {
    super(`module "${name}" is installed and still loading; retry shortly`, {
      headers: { "Retry-After": "1" },
    });
  }
}

/** A payload above the module's `limits.max_payload_bytes`. */
export class PayloadTooLargeError extends EdgedError {
  override readonly code = "payload_too_large";
  override readonly status = 413;
  /** Builds the error. */
  constructor(size: number, limit: number) {
    super(`payload is ${size} bytes, limits.max_payload_bytes is ${limit}`);
  }
}

/**
 * A message whose effects the runtime refused when it committed them (its kv
 * writes over the kv grant the module commits under, e.g. a message the old
 * version still ran during a swap to a smaller grant): none of them was kept,
 * neither its kv writes nor its publications. 507 as for a quota the request
 * would exceed (RFC 4331 section 6; `insufficient_storage` is the disk's).
 */
export class ModuleEffectsRefusedError extends EdgedError {
  override readonly code = "module_effects_refused";
  override readonly status = 507;
  /** Builds the error; `why` says what the runtime refused. */
  constructor(name: string, why: string) {
    super(
      `module "${name}" handled the message but its effects were refused at commit, ` +
        `so none was kept (neither kv writes nor publications): ${why}`,
    );
  }
}

/**
 * An install that would take the memory the installed modules may use
 * together (the sum of their `limits.memory_bytes`) past the device's module
 * memory budget (`modules.memory_budget_bytes`). Nothing was installed. 507
 * as for a quota the request would exceed (RFC 4331 section 6).
 */
export class ModuleMemoryBudgetError extends EdgedError {
  override readonly code = "module_memory_budget";
  override readonly status = 507;
  /** Builds the error: `asked` by the module, `claimed` by the others, of `budget`. */
  constructor(name: string, asked: number, claimed: number, budget: number) {
    super(
      `module "${name}" may use ${formatBytes(asked)} of memory (limits.memory_bytes), but the ` +
        `other installed modules may use ${formatBytes(claimed)} of the ${formatBytes(budget)} ` +
        `the device gives ` +
        `modules (modules.memory_budget_bytes): lower its limit, remove a module, or raise ` +
        `the budget`,
    );
  }
}

/** A call waiting on a sandbox Worker that died or was stopped; retry shortly. */
export class WorkerGoneError extends EdgedError {
  override readonly code = "sandbox_unavailable";
  override readonly status = 503;
  /** Builds the error. */
  constructor(lane: number, why: string) {
    super(`sandbox worker ${lane} ${why}`, { headers: { "Retry-After": "1" } });
  }
}
