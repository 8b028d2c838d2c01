/**
 * Moving queued deliveries into the Workers: per Worker, one batch out at a
 * time (so each module's messages stay in order), filled round-robin over
 * the Worker's modules, one message each per round, up to {@link BATCH}.
 * A module's `messages_per_second` paces it and a quarantine pauses it: its
 * messages wait (in its queue, then in their log) instead of being dropped.
 *
 * @module
 */
import { getLogger } from "../lib/mod.ts";
import type { Delivery, ModuleRecord } from "./module_record.ts";
import type { WorkerPool } from "./pool.ts";
import type { WireCall, WireOutcome } from "./pool_protocol.ts";

const log = getLogger(["edged", "modules"]);

/** Messages sent to a Worker in one batch. */
const BATCH = 128;
/** Payload bytes sent to a Worker in one batch (one message always goes, whatever its size). */
const BATCH_BYTES = 16 << 20;

/** What the dispatcher needs from the module host. */
export interface DispatchHost {
  /** True once the host stopped: nothing more is sent. */
  stopped(): boolean;
  /** Milliseconds every module still waits before anything is sent (the store's disk was full). */
  heldMs(): number;
  /** The Worker pool, if started. */
  pool(): WorkerPool | undefined;
  /** The modules running in Worker `lane`. */
  recordsIn(lane: number): ModuleRecord[];
  /** Ends `r`'s quarantine if it expired. */
  release(r: ModuleRecord): void;
  /** Tops up `r`'s queue from its logs; true when it is still behind. */
  refill(r: ModuleRecord): boolean;
  /** Books the outcome of delivery `d`, run by instance `inst` of `r` at generation `gen`. */
  apply(r: ModuleRecord, inst: number, out: WireOutcome, d: Delivery, gen: number): void;
  /** Deliveries of `r` died with their Worker (they are delivered again). */
  lost(r: ModuleRecord, ds: Delivery[], gen: number, err: Error): void;
}

/** A call sent to a Worker, with what its outcome is booked against. */
interface Sent extends WireCall {
  r: ModuleRecord;
  d: Delivery;
  gen: number;
}

/** Pumps queued messages into the Workers of one module host. */
export class Dispatcher {
  #busy: boolean[] = [];
  #kicked: boolean[] = [];
  #rr: number[] = [];
  #timers: (ReturnType<typeof setTimeout> | undefined)[] = [];

  /** A dispatcher over `host`'s modules. */
  constructor(private readonly host: DispatchHost) {}

  /** Pumps Worker `lane` once the current synchronous work is done (bursts go as one batch). */
  kick(lane: number): void {
    if (this.#kicked[lane] || this.host.stopped()) return;
    this.#kicked[lane] = true;
    queueMicrotask(() => {
      this.#kicked[lane] = false;
      this.#pump(lane);
    });
  }

  /** Stops every pending timer. */
  stop(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
  }

  /** Pumps `lane` again in `ms` (a rate limit refills, a quarantine ends, a log needs reading). */
  #later(lane: number, ms: number): void {
    if (this.#timers[lane] !== undefined || this.host.stopped()) return;
    this.#timers[lane] = setTimeout(() => {
      this.#timers[lane] = undefined;
      this.#pump(lane);
    }, Math.max(0, Math.ceil(ms)));
  }

  /** Sends Worker `lane` one batch, unless one is out already; the next goes when it is back. */
  #pump(lane: number): void {
    const pool = this.host.pool();
    if (this.#busy[lane] || this.host.stopped() || !pool) return;
    const held = this.host.heldMs();
    if (held > 0) {
      this.#later(lane, held);
      return;
    }
    const records = this.host.recordsIn(lane);
    let behind = false;
    let wait = Infinity;
    for (const r of records) {
      if (r.inst === undefined || r.queue.length >= BATCH) continue;
      if (this.host.refill(r)) behind = true;
    }
    const ready = records.filter((r) => r.queue.length > 0 && r.inst !== undefined);
    const turn = this.#rr[lane] ?? 0;
    this.#rr[lane] = turn + 1;
    const start = ready.length ? turn % ready.length : 0;
    const sent: Sent[] = [];
    const paused = new Set<ModuleRecord>();
    /** Rate tokens taken for this batch and not used yet, per module (taken at its first turn). */
    const tokens = new Map<ModuleRecord, number>();
    let bytes = 0;
    const room = () => sent.length < BATCH && bytes < BATCH_BYTES;
    let more = true;
    while (more && room()) {
      more = false;
      for (let i = 0; i < ready.length && room(); i++) {
        const r = ready[(start + i) % ready.length];
        if (paused.has(r) || r.queue.length === 0 || r.inst === undefined) continue;
        this.host.release(r);
        if (r.state === "quarantined") {
          // Its messages wait for the quarantine to end.
          paused.add(r);
          wait = Math.min(wait, r.until - performance.now());
          continue;
        }
        let left = tokens.get(r);
        if (left === undefined) left = r.bucket.takeUpTo(Math.min(r.queue.length, BATCH));
        if (left === 0) {
          paused.add(r);
          tokens.set(r, 0);
          wait = Math.min(wait, 1000 / r.bucket.rate);
          continue;
        }
        tokens.set(r, left - 1);
        const d = r.dequeue()!;
        bytes += d.payload.length;
        sent.push({ inst: r.inst, topic: d.topic, payload: d.payload, r, d, gen: r.gen });
        r.sent.push(d);
        r.inFlight++;
        if (r.queue.length > 0) more = true;
      }
    }
    for (const [r, left] of tokens) if (left > 0) r.bucket.giveBack(left);
    if (wait !== Infinity) this.#later(lane, wait);
    if (sent.length === 0) {
      if (behind) this.#later(lane, 0);
      return;
    }
    this.#busy[lane] = true;
    pool.run(lane, sent).then((outcomes) => {
      // Messages a Worker did not run (their module faulted earlier in the batch)
      // go back to the front of their queue, in order.
      let back: Map<ModuleRecord, Delivery[]> | undefined;
      for (let i = 0; i < outcomes.length; i++) {
        const out = outcomes[i];
        const { r, d, gen, inst } = sent[i];
        r.inFlight--;
        unsend(r, d);
        if (out) this.host.apply(r, inst, out, d, gen);
        else if (gen === r.gen) {
          back ??= new Map();
          const ds = back.get(r);
          if (ds) ds.push(d);
          else back.set(r, [d]);
        }
      }
      if (back) { for (const [r, ds] of back) r.requeue(ds); }
    }, (err) => {
      const hit = new Map<ModuleRecord, { ds: Delivery[]; gen: number }>();
      for (const { r, d, gen } of sent) {
        r.inFlight--;
        unsend(r, d);
        const h = hit.get(r) ?? { ds: [], gen };
        h.ds.push(d);
        hit.set(r, h);
      }
      if (this.host.stopped()) return;
      // The Worker died with the batch: nothing of it committed, so it goes again.
      for (const [r, { ds, gen }] of hit) this.host.lost(r, ds, gen, err);
    }).catch((err) => {
      // A bug of ours must not stop delivery to every module of this Worker.
      log.error("delivery on sandbox worker {lane} failed: {error}", { lane, error: String(err) });
    }).finally(() => {
      this.#busy[lane] = false;
      this.#pump(lane);
    });
  }
}

/** Takes `d` off `r`'s in-flight list (it is at the head unless a restart cleared it). */
function unsend(r: ModuleRecord, d: Delivery): void {
  if (r.sent[0] === d) r.sent.shift();
  else {
    const i = r.sent.indexOf(d);
    if (i >= 0) r.sent.splice(i, 1);
  }
}
