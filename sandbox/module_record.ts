/**
 * One installed module as the module host keeps it: the validated module,
 * where its instance runs, its cursors and queue, its rate bucket, its fault
 * state and its statistics; and the status the API shows for it.
 *
 * @module
 */
import { TopicCache, topicMatches } from "../lib/mod.ts";
import type { FaultKind } from "./errors.ts";
import { TokenBucket } from "./host/context.ts";
import type { Manifest } from "./manifest.ts";
import type { ValidatedModule } from "./validate.ts";

/** Lifecycle state of an installed module ("loading" only while edged starts). */
export type ModuleState = "running" | "quarantined" | "failed" | "loading";

/** The two durable logs a module reads through its cursors. */
export type Stream = "readings" | "messages";

/** One message on its way to a module, from one of the logs. */
export interface Delivery {
  topic: string;
  payload: Uint8Array;
  stream: Stream;
  /** Its id in that log. */
  id: number;
  /** When it became durable (ms since the epoch, fractional): for the effect lag. */
  at: number;
}

/** A module's position in one log. */
export class StreamState {
  /** Durable: the module's effects for everything up to here are committed. */
  committed: number;
  /** Taken into the queue (or found not to match) up to here. */
  next: number;
  /** Position written in the group transaction being built (-1: none). */
  writing = -1;
  constructor(at: number) {
    this.committed = at;
    this.next = at;
  }
}

/** One subscription as the API shows it: the filter and the durable logs that serve it. */
export interface SubscriptionStatus {
  filter: string;
  /** `readings`: the reading log (`sensors/...`); `messages`: the modules' message log. */
  from: Stream[];
  durable: true;
}

/** Where a module's cursors stand, as the API shows it. */
export interface DeliveryStatus {
  /** Reading-log id up to which its effects are committed, and how many readings are behind it. */
  readings: { cursor: number; lag: number };
  /** The same in the message log. */
  messages: { cursor: number; lag: number };
  /** Whether it fell further behind than `modules.max_lag` and skipped ahead (see `dropped.lagging`). */
  lagging: boolean;
  /** Time from a reading's acknowledgement (202) to the module's committed effect, recent messages. */
  effect_lag_ms: { p50: number | null; p99: number | null; samples: number };
}

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
  /**
   * Messages not delivered: `oversize` (above `limits.max_payload_bytes`),
   * `lagging` (skipped when the module fell further behind than
   * `modules.max_lag`). Nothing else drops: a full queue, the rate limit and a
   * quarantine make messages wait in their log.
   */
  dropped: { oversize: number; lagging: number };
  /** Messages queued, plus those sent to the module's Worker and not yet done. */
  queue_depth: number;
  /** Payload bytes queued (not counting those sent to the Worker). */
  queue_bytes: number;
  /** Each subscription and the durable log serving it. */
  subscriptions: SubscriptionStatus[];
  /** Cursors, lag and losses of durable delivery; null for a module that is not running. */
  delivery: DeliveryStatus | null;
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

/** The status of a module installed on disk that failed to load (or is still loading). */
export function failedStatus(
  name: string,
  f: FailedModule,
  state: "failed" | "loading" = "failed",
): ModuleStatus {
  return {
    name,
    version: f.version,
    sha256: f.sha256,
    state,
    subscribe: [],
    loaded_at: f.at.toISOString(),
    messages_in: 0,
    messages_out: 0,
    errors: 0,
    faults: zeroFaults(),
    dropped: { oversize: 0, lagging: 0 },
    queue_depth: 0,
    queue_bytes: 0,
    subscriptions: [],
    delivery: null,
    worker: null,
    fuel_used: 0,
    last_fuel_used: 0,
    overruns: 0,
    memory_bytes: 0,
    kv_bytes: 0,
    logs_dropped: 0,
    quarantined_until: null,
    last_error: state === "failed"
      ? { kind: "load", message: f.message, at: f.at.toISOString() }
      : null,
  };
}

/** Which logs can hold messages matching `filter`: readings are `sensors/{device}/{metric}`. */
export function streamsOf(filter: string): Stream[] {
  const first = filter.split("/")[0];
  const readings = first === "sensors" || first === "+" || first === "#";
  return readings ? ["readings", "messages"] : ["messages"];
}

/** Recent effect lags, for their p50 and p99. */
const LAG_SAMPLES = 1024;
/** Topics whose match a record remembers. */
const WANTS_CACHE = 4096;

/** A running (or quarantined) module: what the host tracks between messages. */
export class ModuleRecord {
  /** The running instance's id in the pool (undefined while it moves or reloads). */
  inst: number | undefined;
  state: ModuleState = "running";
  /** Deliveries taken from the logs, waiting for the Worker (change it through the methods below). */
  queue: Delivery[] = [];
  /** Payload bytes in {@link ModuleRecord.queue}. */
  queueBytes = 0;
  /** Deliveries sent to the Worker, in order, whose outcome is not in yet. */
  sent: Delivery[] = [];
  /** Its positions in the two logs. */
  streams: Record<Stream, StreamState>;
  /** Bumped when queued and in-flight work is thrown away (its outcomes are then ignored). */
  gen = 0;
  /** Fell behind further than the bound and skipped ahead. */
  lagging = false;
  #lags = new Float64Array(LAG_SAMPLES);
  #lagCount = 0;
  bucket: TokenBucket;
  loadedAt = new Date();
  /** Faults in a row; reset by a good call. */
  consecutive = 0;
  /** The next quarantine's length. */
  backoffMs: number;
  /** End of the quarantine (`performance.now()` ms: the monotonic clock). */
  until = 0;

  /** End of the quarantine on the system clock as it reads now (ms since the epoch). */
  get quarantinedUntilMs(): number {
    return Date.now() + this.until - performance.now();
  }
  memoryBytes = 0;
  /** Messages sent to the Worker whose outcome is not in yet (including messages API calls). */
  inFlight = 0;
  /** Log lines dropped by the current version, and by the versions before it. */
  logsDropped = 0;
  logsDroppedBefore = 0;
  s = {
    messages_in: 0,
    messages_out: 0,
    errors: 0,
    faults: zeroFaults(),
    dropped: { oversize: 0, lagging: 0 },
    fuel_used: 0,
    last_fuel_used: 0,
    overruns: 0,
    last_error: null as ModuleStatus["last_error"],
  };

  /** A record for `validated`, running in Worker `lane`, with its cursors at `cursor`. */
  constructor(
    public validated: ValidatedModule,
    quarantineMs: number,
    /** The Worker the instance runs in. */
    public lane: number,
    cursor: { readings: number; messages: number; skipped: number },
  ) {
    const mps = validated.manifest.limits.messages_per_second;
    this.bucket = new TokenBucket(mps, mps);
    this.backoffMs = quarantineMs;
    this.streams = {
      readings: new StreamState(cursor.readings),
      messages: new StreamState(cursor.messages),
    };
    this.s.dropped.lagging = cursor.skipped;
  }

  /** Appends a delivery to the queue. */
  enqueue(d: Delivery): void {
    this.queue.push(d);
    this.queueBytes += d.payload.length;
  }

  /** Takes the oldest delivery off the queue. */
  dequeue(): Delivery | undefined {
    const d = this.queue.shift();
    if (d) this.queueBytes -= d.payload.length;
    return d;
  }

  /** Puts deliveries back at the front of the queue, in order. */
  requeue(ds: Delivery[]): void {
    this.queue.unshift(...ds);
    for (const d of ds) this.queueBytes += d.payload.length;
  }

  /** Empties the queue; returns how many deliveries it held. */
  clearQueue(): number {
    const n = this.queue.length;
    this.queue = [];
    this.queueBytes = 0;
    return n;
  }

  /** Drops the queued deliveries of `stream` up to id `upTo`; returns how many. */
  dropQueued(stream: Stream, upTo: number): number {
    let n = 0;
    this.queue = this.queue.filter((d) => {
      const drop = d.stream === stream && d.id <= upTo;
      if (drop) {
        n++;
        this.queueBytes -= d.payload.length;
      }
      return !drop;
    });
    return n;
  }

  /** Answers of {@link ModuleRecord.wants} for topics seen lately (readings repeat their topics). */
  #wants = new TopicCache(
    WANTS_CACHE,
    (topic) => this.manifest.subscribe.some((f) => topicMatches(f, topic)),
  );
  /** Observers of the module's histograms (set by the module host). */
  observeCall?: (seconds: number) => void;
  observeEffectLag?: (seconds: number) => void;

  /** Whether a message on `topic` is for this module (its manifest's `subscribe`). */
  wants(topic: string): boolean {
    return this.#wants.get(topic);
  }

  /** Whether any subscription can match a reading's topic (of the running version). */
  get readsReadings(): boolean {
    if (this.#readsFor !== this.validated) {
      this.#readsFor = this.validated;
      this.#reads = this.manifest.subscribe.some((f) => streamsOf(f).includes("readings"));
    }
    return this.#reads;
  }
  #readsFor: ValidatedModule | undefined;
  #reads = false;

  /**
   * The highest position in `stream` the module is done with: just below its
   * oldest delivery still queued or in flight, else as far as it has looked.
   */
  safePos(stream: Stream): number {
    for (const d of this.sent) if (d.stream === stream) return d.id - 1;
    for (const d of this.queue) if (d.stream === stream) return d.id - 1;
    return this.streams[stream].next;
  }

  /** Books the lag of one committed effect. */
  observeLag(ms: number): void {
    this.#lags[this.#lagCount++ % LAG_SAMPLES] = ms;
  }

  /** p50 and p99 of the recent effect lags. */
  lagPercentiles(): { p50: number | null; p99: number | null; samples: number } {
    const n = Math.min(this.#lagCount, LAG_SAMPLES);
    if (n === 0) return { p50: null, p99: null, samples: 0 };
    const sorted = this.#lags.slice(0, n).sort();
    const q = (p: number) => Math.round(sorted[Math.min(n - 1, Math.floor(n * p))] * 100) / 100;
    return { p50: q(0.5), p99: q(0.99), samples: n };
  }

  /** The running version's manifest. */
  get manifest(): Manifest {
    return this.validated.manifest;
  }

  /** Takes a new version: counters stay, the rate bucket follows its manifest. */
  swapTo(validated: ValidatedModule): void {
    this.#wants.clear();
    this.logsDroppedBefore += this.logsDropped;
    this.logsDropped = 0;
    this.validated = validated;
    const mps = validated.manifest.limits.messages_per_second;
    this.bucket = new TokenBucket(mps, mps);
    this.loadedAt = new Date();
  }

  /** The API's view, with the module's kv usage and the logs' newest ids. */
  status(kvBytes: number, heads: Record<Stream, number>): ModuleStatus {
    const m = this.manifest;
    const at = (s: Stream) => ({
      cursor: this.streams[s].committed,
      lag: Math.max(0, heads[s] - this.streams[s].committed),
    });
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
      subscriptions: m.subscribe.map((filter) => ({
        filter,
        from: streamsOf(filter),
        durable: true,
      })),
      delivery: {
        readings: at("readings"),
        messages: at("messages"),
        lagging: this.lagging,
        effect_lag_ms: this.lagPercentiles(),
      },
      worker: this.lane,
      memory_bytes: this.memoryBytes,
      kv_bytes: kvBytes,
      logs_dropped: this.logsDroppedBefore + this.logsDropped,
      quarantined_until: this.state === "quarantined"
        ? new Date(this.quarantinedUntilMs).toISOString()
        : null,
    };
  }
}
