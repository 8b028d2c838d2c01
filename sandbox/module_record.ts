/**
 * One installed module as the module host keeps it: the validated module,
 * where its instance runs, its queue, its rate bucket, its fault state and
 * its statistics; and the status the API shows for it.
 *
 * @module
 */
import type { BusMessage } from "../runtime/mod.ts";
import type { FaultKind } from "./errors.ts";
import { TokenBucket } from "./host/context.ts";
import type { Manifest } from "./manifest.ts";
import type { ValidatedModule } from "./validate.ts";

/** Lifecycle state of an installed module. */
export type ModuleState = "running" | "quarantined" | "failed";

/** Per-module statistics, as the API shows them. */
export interface ModuleStatus {
  name: string;
  version: string;
  sha256: string;
  state: ModuleState;
  subscribe: string[];
  loaded_at: string;
  messages_in: number;
  messages_out: number;
  errors: number;
  faults: Record<FaultKind, number>;
  dropped: { rate: number; overflow: number; quarantine: number; oversize: number };
  /** Messages queued, plus those sent to the module's Worker and not yet done. */
  queue_depth: number;
  /** Payload bytes queued (not counting those sent to the Worker). */
  queue_bytes: number;
  /** The Worker running the module (0-based; `modules.workers` is the probation Worker), or null. */
  worker: number | null;
  fuel_used: number;
  last_fuel_used: number;
  /** Calls that held their Worker past their wall-clock deadline. */
  overruns: number;
  memory_bytes: number;
  kv_bytes: number;
  logs_dropped: number;
  quarantined_until: string | null;
  last_error: { kind: FaultKind | "load"; message: string; at: string } | null;
}

/** Fault counters at zero. */
export const zeroFaults = (): Record<FaultKind, number> => ({
  fuel: 0,
  trap: 0,
  stack_overflow: 0,
  memory: 0,
  host: 0,
  exit: 0,
});

/** An installed module that could not be loaded at start. */
export interface FailedModule {
  version: string;
  sha256: string;
  message: string;
  at: Date;
}

/** The status of a module installed on disk that failed to load. */
export function failedStatus(name: string, f: FailedModule): ModuleStatus {
  return {
    name,
    version: f.version,
    sha256: f.sha256,
    state: "failed",
    subscribe: [],
    loaded_at: f.at.toISOString(),
    messages_in: 0,
    messages_out: 0,
    errors: 0,
    faults: zeroFaults(),
    dropped: { rate: 0, overflow: 0, quarantine: 0, oversize: 0 },
    queue_depth: 0,
    queue_bytes: 0,
    worker: null,
    fuel_used: 0,
    last_fuel_used: 0,
    overruns: 0,
    memory_bytes: 0,
    kv_bytes: 0,
    logs_dropped: 0,
    quarantined_until: null,
    last_error: { kind: "load", message: f.message, at: f.at.toISOString() },
  };
}

/** A running (or quarantined) module: what the host tracks between messages. */
export class ModuleRecord {
  /** The running instance's id in the pool (undefined while it moves or reloads). */
  inst: number | undefined;
  state: ModuleState = "running";
  /** Messages waiting for the module, oldest first (change it through the methods below). */
  queue: BusMessage[] = [];
  /** Payload bytes in {@link ModuleRecord.queue}. */
  queueBytes = 0;
  unsubscribe: (() => void)[] = [];
  bucket: TokenBucket;
  loadedAt = new Date();
  /** Faults in a row; reset by a good call. */
  consecutive = 0;
  /** The next quarantine's length. */
  backoffMs: number;
  /** End of the quarantine (ms since the epoch). */
  until = 0;
  memoryBytes = 0;
  /** Messages sent to the Worker whose outcome is not in yet. */
  inFlight = 0;
  /** Log lines dropped by the current version, and by the versions before it. */
  logsDropped = 0;
  logsDroppedBefore = 0;
  s = {
    messages_in: 0,
    messages_out: 0,
    errors: 0,
    faults: zeroFaults(),
    dropped: { rate: 0, overflow: 0, quarantine: 0, oversize: 0 },
    fuel_used: 0,
    last_fuel_used: 0,
    overruns: 0,
    last_error: null as ModuleStatus["last_error"],
  };

  /** A record for `validated`, running in Worker `lane`. */
  constructor(
    public validated: ValidatedModule,
    quarantineMs: number,
    /** The Worker the instance runs in. */
    public lane: number,
  ) {
    const mps = validated.manifest.limits.messages_per_second;
    this.bucket = new TokenBucket(mps, mps);
    this.backoffMs = quarantineMs;
  }

  /** Appends a message to the queue. */
  enqueue(msg: BusMessage): void {
    this.queue.push(msg);
    this.queueBytes += msg.payload.length;
  }

  /** Takes the oldest message off the queue. */
  dequeue(): BusMessage | undefined {
    const msg = this.queue.shift();
    if (msg) this.queueBytes -= msg.payload.length;
    return msg;
  }

  /** Puts messages back at the front of the queue, in order. */
  requeue(msgs: BusMessage[]): void {
    this.queue.unshift(...msgs);
    for (const m of msgs) this.queueBytes += m.payload.length;
  }

  /** Empties the queue; returns how many messages it held. */
  clearQueue(): number {
    const n = this.queue.length;
    this.queue = [];
    this.queueBytes = 0;
    return n;
  }

  /** The running version's manifest. */
  get manifest(): Manifest {
    return this.validated.manifest;
  }

  /** Takes a new version: counters stay, the rate bucket follows its manifest. */
  swapTo(validated: ValidatedModule): void {
    this.logsDroppedBefore += this.logsDropped;
    this.logsDropped = 0;
    this.validated = validated;
    const mps = validated.manifest.limits.messages_per_second;
    this.bucket = new TokenBucket(mps, mps);
    this.loadedAt = new Date();
  }

  /** The API's view, with the module's kv usage. */
  status(kvBytes: number): ModuleStatus {
    const m = this.manifest;
    return {
      name: m.name,
      version: m.version,
      sha256: this.validated.sha256,
      state: this.state,
      subscribe: m.subscribe,
      loaded_at: this.loadedAt.toISOString(),
      ...structuredClone(this.s),
      queue_depth: this.queue.length + this.inFlight,
      queue_bytes: this.queueBytes,
      worker: this.lane,
      memory_bytes: this.memoryBytes,
      kv_bytes: kvBytes,
      logs_dropped: this.logsDroppedBefore + this.logsDropped,
      quarantined_until: this.state === "quarantined" ? new Date(this.until).toISOString() : null,
    };
  }
}
