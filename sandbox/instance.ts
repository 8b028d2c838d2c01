/**
 * One live instance of a validated module: instantiation, the guest entry
 * points (start, `_initialize`, `edge_init`, `edge_alloc` + `edge_on_message`),
 * each bounded by the manifest's fuel, and the classification of faults.
 *
 * @module
 */

import { type FaultKind, ModuleFault } from "./errors.ts";
import {
  CallState,
  type LogLine,
  type LogSink,
  ModuleContext,
  type Published,
  type PublishRate,
  type SensorReader,
} from "./host/context.ts";
import { edgeImports } from "./host/edge.ts";
import { flushOutput, WASI_MODULE, WasiExit, wasiImports } from "./host/wasi.ts";
import type { KvStore } from "./kv.ts";
import { NN_MODULE } from "./nn/abi.ts";
import type { NnGuest } from "./nn/host.ts";
import {
  FUEL_CHARGE_EXPORT,
  FUEL_GET_EXPORT,
  FUEL_SET_EXPORT,
  START_EXPORT,
  type ValidatedModule,
} from "./validate.ts";

/** What one guest call did (the answer of `POST /api/v1/modules/{name}/messages`). */
export interface CallOutcome {
  /** `edge_on_message`'s return value (0 = handled), or null after a fault. */
  status: number | null;
  published: Published[];
  logs: LogLine[];
  /** Fuel the call consumed (0 when the module is not metered). */
  fuelUsed: number;
  /** Set when the call faulted. */
  error?: { kind: FaultKind; message: string };
}

/** What an outcome holds for no publications or no log lines (never written to). */
const NONE = Object.freeze([]) as unknown as never[];

/** The part of a {@link ValidatedModule} an instance runs (it crosses to a Worker). */
export type RunnableModule = Pick<ValidatedModule, "manifest" | "module">;

/** What an instance needs from its host. */
export interface InstanceDeps {
  kv?: KvStore;
  /** How `sensor_read` reads (default: checks the grants and reads the file in this thread). */
  sensor?: SensorReader;
  logSink: LogSink;
  logRate?: { perSecond: number; burst: number };
  /** Builds the WASI-NN imports of a module granted `nn` (see `nn/host.ts`). */
  nn?: (ctx: ModuleContext) => NnGuest;
  /** What the module may publish per second, when it outlives this instance (a Worker's slot). */
  publishRate?: PublishRate;
  /** Called with the instance's context before anything runs (to charge host work done elsewhere). */
  bind?: (ctx: ModuleContext) => void;
}

type Exports = {
  memory: WebAssembly.Memory;
  edge_alloc: (n: number) => number;
  edge_on_message: (tp: number, tl: number, pp: number, pl: number) => number;
  edge_init?: () => number;
  _initialize?: () => void;
  [FUEL_SET_EXPORT]?: (fuel: number) => void;
  [FUEL_GET_EXPORT]?: () => number;
  [FUEL_CHARGE_EXPORT]?: (fuel: number) => number;
  [START_EXPORT]?: () => void;
};

/** V8's messages for the traps a failed allocation ends in: an abort, or a stray access. */
const ALLOCATOR_TRAP = /^unreachable|memory access out of bounds/;
/** `WebAssembly.Exception` (exception handling), which Deno's type library does not declare. */
const WasmException = (WebAssembly as unknown as { Exception?: abstract new () => unknown })
  .Exception;

/** A running instance of one module version. */
export class GuestInstance {
  readonly ctx: ModuleContext;
  readonly #exports: Exports;
  readonly #budget: number;

  private constructor(readonly validated: RunnableModule, ctx: ModuleContext, exports: Exports) {
    this.ctx = ctx;
    this.#exports = exports;
    this.#budget = validated.manifest.limits.fuel_per_message;
  }

  /**
   * Instantiates `validated` and runs its initialisers (start function,
   * `_initialize`, `edge_init`), each with a full fuel budget.
   * @throws {ModuleFault} when an initialiser faults or `edge_init` returns non-zero.
   */
  static create(validated: RunnableModule, deps: InstanceDeps): GuestInstance {
    const m = validated.manifest;
    const ctx = new ModuleContext(
      m.name,
      m,
      deps.kv,
      deps.logSink,
      deps.logRate,
      deps.sensor,
      deps.publishRate,
    );
    deps.bind?.(ctx);
    const imports: WebAssembly.Imports = { edge: edgeImports(ctx) };
    if (m.grants.wasi) imports[WASI_MODULE] = wasiImports(ctx);
    const nn = m.grants.nn.length > 0 ? deps.nn?.(ctx) : undefined;
    if (nn) imports[NN_MODULE] = nn.imports;
    let raw: WebAssembly.Instance;
    try {
      raw = new WebAssembly.Instance(validated.module, imports);
    } catch (cause) {
      throw new ModuleFault("host", `instantiation failed: ${(cause as Error).message}`, { cause });
    }
    const exports = raw.exports as unknown as Exports;
    ctx.memory = exports.memory;
    nn?.bindFuel(exports[FUEL_GET_EXPORT], exports[FUEL_SET_EXPORT]);
    ctx.bindFuel(exports[FUEL_CHARGE_EXPORT]);
    const inst = new GuestInstance(validated, ctx, exports);
    for (
      const [what, fn] of [
        ["start function", exports[START_EXPORT]],
        ["_initialize", exports._initialize],
        ["edge_init", exports.edge_init],
      ] as const
    ) {
      if (!fn) continue;
      const out = inst.#run(() => fn());
      if (out.error) throw new ModuleFault(out.error.kind, `${what}: ${out.error.message}`);
      if (what === "edge_init" && out.status !== 0) {
        throw new ModuleFault("trap", `edge_init returned ${out.status} (0 means ready)`);
      }
    }
    return inst;
  }

  /** Bytes of linear memory the instance holds now. */
  get memoryBytes(): number {
    return this.#exports.memory.buffer.byteLength;
  }

  /** Delivers one message: `edge_alloc`, copy in, `edge_on_message`, all within one fuel budget. */
  call(topic: Uint8Array, payload: Uint8Array): CallOutcome {
    const e = this.#exports;
    return this.#run(() => {
      const total = topic.length + payload.length;
      const ptr = e.edge_alloc(total);
      const buf = this.ctx.bytes(ptr, total);
      if (!buf || (ptr === 0 && total > 0)) {
        throw new ModuleFault("trap", `edge_alloc(${total}) returned an unusable pointer ${ptr}`);
      }
      buf.set(topic);
      buf.set(payload, topic.length);
      return e.edge_on_message(ptr, topic.length, ptr + topic.length, payload.length);
    });
  }

  /**
   * {@link GuestInstance.call} with the topic and then the payload side by
   * side in `bytes` (`topicLength` bytes, then the rest): one copy into the
   * guest, as a packed batch holds them.
   */
  callJoined(bytes: Uint8Array, topicLength: number): CallOutcome {
    const e = this.#exports;
    return this.#run(() => {
      const total = bytes.length;
      const ptr = e.edge_alloc(total);
      if (!this.ctx.write(ptr, bytes) || (ptr === 0 && total > 0)) {
        throw new ModuleFault("trap", `edge_alloc(${total}) returned an unusable pointer ${ptr}`);
      }
      return e.edge_on_message(ptr, topicLength, ptr + topicLength, total - topicLength);
    });
  }

  #run(fn: () => number | void): CallOutcome {
    const ctx = this.ctx;
    const last = ctx.call;
    // The last call's state is reused unless it handed out lines or publications.
    if (last.published.length === 0 && last.logs.length === 0) {
      last.publishedBytes = 0;
      last.logBytes = 0;
    } else ctx.call = new CallState();
    ctx.unwound = undefined;
    const e = this.#exports;
    const setFuel = e[FUEL_SET_EXPORT];
    setFuel?.(this.#budget);
    let status: number | null = null;
    let error: CallOutcome["error"];
    try {
      status = (fn() as number | undefined) ?? 0;
    } catch (err) {
      error = this.#fault(err);
    }
    // A host function ended the call (proc_exit): so it ends, even if the guest caught that
    // and went on (until its next fuel charge, ModuleContext.unwind) or returned.
    // (Read again: the call may have set it, which the type checker cannot see.)
    const unwound = ctx.unwound as ModuleContext["unwound"];
    if (unwound !== undefined) error = this.#fault(unwound.err);
    if (ctx.pendingOutput.size > 0) flushOutput(ctx, true);
    let fuelUsed = 0;
    if (setFuel) {
      const left = unwound?.fuelLeft ?? e[FUEL_GET_EXPORT]!();
      fuelUsed = left < 0 ? this.#budget : this.#budget - left;
    }
    const call = ctx.call;
    const published = error || call.published.length === 0 ? NONE : call.published;
    const logs = call.logs.length === 0 ? NONE : call.logs;
    return { status: error ? null : status, published, logs, fuelUsed, error };
  }

  /** The fault `err` ended a call with. */
  #fault(err: unknown): NonNullable<CallOutcome["error"]> {
    const kind = this.#classify(err);
    // A host function that ran out of fuel says which (ModuleContext.charge, wasi-nn compute).
    const message = kind === "fuel" && !(err instanceof ModuleFault)
      ? `fuel exhausted: the call used more than limits.fuel_per_message (${this.#budget})`
      : err instanceof Error
      ? err.message
      : String(err);
    return { kind, message };
  }

  #classify(err: unknown): FaultKind {
    if (err instanceof ModuleFault) return err.kind;
    if (err instanceof WasiExit) return "exit";
    if (err instanceof RangeError && /call stack/i.test(err.message)) return "stack_overflow";
    if (err instanceof WebAssembly.RuntimeError) {
      const getFuel = this.#exports[FUEL_GET_EXPORT];
      if (getFuel && getFuel() < 0) return "fuel";
      const cap = this.validated.manifest.limits.memory_bytes;
      // An abort (unreachable) or a stray access while memory sits at its cap is most likely an
      // allocator giving up; a division by zero or a bad indirect call is not, at any size.
      if (this.memoryBytes + 65536 > cap && ALLOCATOR_TRAP.test(err.message)) return "memory";
      return "trap";
    }
    // The guest's own exception (exception handling), thrown out of the call: its trap.
    if (WasmException && err instanceof WasmException) return "trap";
    return "host";
  }
}
