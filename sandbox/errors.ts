/**
 * Error classes of the sandbox.
 *
 * @module
 */

/** A module or manifest was refused; `reasons` lists every problem found. */
export class ModuleValidationError extends Error {
  /** Every reason the module was refused, each naming the rule and the value. */
  readonly reasons: string[];
  constructor(reasons: string[], options?: ErrorOptions) {
    super(`module refused: ${reasons.join("; ")}`, options);
    this.name = "ModuleValidationError";
    this.reasons = reasons;
  }
}

/** Why a guest call stopped early. */
export type FaultKind = "fuel" | "trap" | "stack_overflow" | "memory" | "host" | "exit";

/** A guest call did not complete: trap, fuel exhaustion, stack overflow, limit or proc_exit. */
export class ModuleFault extends Error {
  /** What kind of fault it was. */
  readonly kind: FaultKind;
  constructor(kind: FaultKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ModuleFault";
    this.kind = kind;
  }
}

/** The named module is not installed. */
export class ModuleNotFoundError extends Error {
  constructor(name: string) {
    super(`module "${name}" is not installed`);
    this.name = "ModuleNotFoundError";
  }
}
