/**
 * Moving queued messages into the Workers: per Worker, one batch out at a
 * time (so each module's messages stay in order), filled round-robin over
 * the Worker's modules, one message each per round, up to {@link BATCH}.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { BusMessage } from "../runtime/mod.ts";
import type { ModuleRecord } from "./module_record.ts";
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
  /** The Worker pool, if started. */
  pool(): WorkerPool | undefined;
  /** The modules running in Worker `lane`. */
  recordsIn(lane: number): ModuleRecord[];
  /** Ends `r`'s quarantine if it expired. */
  release(r: ModuleRecord): void;
  /** Books the outcome of one message run by instance `inst` of `r`. */
  apply(r: ModuleRecord, inst: number, out: WireOutcome): void;
  /** `n` messages of `r` died with their Worker. */
  lost(r: ModuleRecord, n: number, err: Error): void;
}

/** Pumps queued messages into the Workers of one module host. */
export class Dispatcher {
  #busy: boolean[] = [];
  #kicked: boolean[] = [];
  #rr: number[] = [];

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

  /** Sends Worker `lane` one batch, unless one is out already; the next goes when it is back. */
  #pump(lane: number): void {
    const pool = this.host.pool();
    if (this.#busy[lane] || this.host.stopped() || !pool) return;
    const records = this.host.recordsIn(lane).filter((r) => r.queue.length);
    if (records.length === 0) return;
    const turn = this.#rr[lane] ?? 0;
    this.#rr[lane] = turn + 1;
    const start = turn % records.length;
    const calls: WireCall[] = [];
    const sent: { r: ModuleRecord; msg: BusMessage }[] = [];
    let bytes = 0;
    const room = () => calls.length < BATCH && bytes < BATCH_BYTES;
    let more = true;
    while (more && room()) {
      more = false;
      for (let i = 0; i < records.length && room(); i++) {
        const r = records[(start + i) % records.length];
        if (r.queue.length === 0 || r.inst === undefined) continue;
        this.host.release(r);
        if (r.state === "quarantined") {
          r.s.dropped.quarantine += r.clearQueue();
          continue;
        }
        const msg = r.dequeue()!;
        bytes += msg.payload.length;
        calls.push({ inst: r.inst, topic: msg.topic, payload: msg.payload });
        sent.push({ r, msg });
        r.inFlight++;
        if (r.queue.length > 0) more = true;
      }
    }
    if (calls.length === 0) return;
    this.#busy[lane] = true;
    pool.run(lane, calls).then((outcomes) => {
      for (const { r } of sent) r.inFlight--;
      // Messages a Worker did not run (their module faulted earlier in the batch)
      // go back to the front of their queue, in order, unless it is now quarantined.
      const back = new Map<ModuleRecord, BusMessage[]>();
      outcomes.forEach((out, i) => {
        const { r, msg } = sent[i];
        if (out) this.host.apply(r, calls[i].inst, out);
        else back.set(r, [...(back.get(r) ?? []), msg]);
      });
      for (const [r, msgs] of back) {
        if (r.state === "quarantined") r.s.dropped.quarantine += msgs.length;
        else r.requeue(msgs);
      }
    }, (err) => {
      for (const { r } of sent) r.inFlight--;
      if (this.host.stopped()) return;
      // The Worker died with the batch: these messages are lost, and counted.
      const hit = new Map<ModuleRecord, number>();
      for (const { r } of sent) hit.set(r, (hit.get(r) ?? 0) + 1);
      for (const [r, n] of hit) this.host.lost(r, n, err);
    }).catch((err) => {
      // A bug of ours must not stop delivery to every module of this Worker.
      log.error("delivery on sandbox worker {lane} failed: {error}", { lane, error: String(err) });
    }).finally(() => {
      this.#busy[lane] = false;
      this.#pump(lane);
    });
  }
}
