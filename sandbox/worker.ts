/// <reference lib="deno.worker" />
/**
 * A sandbox Worker: started by {@link WorkerPool} with
 * `deno.permissions: "none"`, it holds many module instances and runs the
 * batches of messages the runtime's thread sends. It cannot read, write, open
 * sockets or run programs; `kv_get` misses and `sensor_read` are answered by
 * the runtime's thread through a shared buffer while this thread waits
 * (Atomics.wait, `worker_link.ts`), so the host functions stay synchronous
 * for the guest. `kv_set` is kept here (`worker_kv.ts`): a batch's writes go
 * back with its outcomes and the runtime commits them with the calls' other
 * effects (see `kv.ts`).
 *
 * @module
 */

import { type FaultKind, ModuleFault } from "./errors.ts";
import { PublishRate, TokenBucket } from "./host/context.ts";
import { GuestInstance, type RunnableModule } from "./instance.ts";
import { nnGuest } from "./nn/host.ts";
import { NnLink } from "./nn/link.ts";
import {
  type FromWorker,
  type LogRate,
  OUT_FIELDS,
  type OutcomeExtra,
  PackedReader,
  packOutcome,
  type SinkLine,
  type ThreadShare,
  type ToWorker,
  type WireOutcome,
} from "./pool_protocol.ts";
import { RuntimeLink } from "./worker_link.ts";
import { type Caller, WorkerKv } from "./worker_kv.ts";
import { collectGarbage, discarded } from "./_worker_gc.ts";

interface Slot {
  module: RunnableModule;
  /** Undefined after a fault (its state may be broken): the next call makes a fresh one. */
  instance: GuestInstance | undefined;
  /** Log lines dropped by earlier instances of this slot. */
  logsDroppedBefore: number;
  /** What the module may publish per second: the slot's, so a fault does not reset it. */
  publishRate: PublishRate;
  /** The module's share of the runtime's thread (ms), for its kv and sensor round trips. */
  thread: TokenBucket;
}

/** The rates a slot keeps across its instances. */
type SlotRates = Pick<Slot, "publishRate" | "thread">;

const slots = new Map<number, Slot>();
/** The shared buffer to the runtime's thread, from the pool's `init` message. */
let link: RuntimeLink;
let logRate: LogRate = { perSecond: 20, burst: 100 };
let threadShare: ThreadShare = { moduleMsPerSecond: 50, workerMsPerSecond: 200 };
let sink: SinkLine[] = [];
let nnLink: NnLink | undefined;
const workerKv = new WorkerKv((inst, key, thread) => link.ask({ inst, op: "kv_get", key }, thread));

function post(msg: FromWorker): void {
  self.postMessage(msg);
}

/** Published bytes a batch's outcomes may hold before the rest of the batch goes back unrun. */
const BATCH_PUBLISHED_BYTES = 32 << 20;

function create(inst: number, module: RunnableModule, slot: SlotRates): GuestInstance {
  const name = module.manifest.name;
  const caller: Caller = { thread: slot.thread };
  return GuestInstance.create(module, {
    kv: module.manifest.grants.kv ? workerKv.storeFor(inst, name, caller) : undefined,
    publishRate: slot.publishRate,
    bind: (ctx) => caller.ctx = ctx,
    sensor: (path, out) => {
      const { code, bytes } = link.ask(
        { inst, op: "sensor", path, cap: out.length },
        caller.thread,
      );
      if (code > 0) out.set(bytes.subarray(0, Math.min(code, out.length)));
      return code;
    },
    logRate,
    logSink: (_module, level, line) => sink.push({ module: name, level, line }),
    nn: (ctx) => nnGuest(ctx, nnLink, inst),
  });
}

function faultOf(err: unknown): { kind: FaultKind; message: string } {
  const f = err instanceof ModuleFault ? err : new ModuleFault("host", String(err));
  return { kind: f.kind, message: f.message };
}

/** `performance.now()` when the last call ended: the next call starts there (one clock read per call). */
let clock = 0;

/** Runs one call with the wall-clock guard's stamps set (see CALL_INST in pool_protocol.ts). */
function guarded(calls: PackedReader, i: number, slot: Slot | undefined): WireOutcome {
  const started = clock;
  const startedAt = link.callStarted(calls.inst(i), started);
  if (slot) workerKv.beginCall(slot.module.manifest.name);
  let out: WireOutcome | undefined;
  try {
    out = run(calls, i, slot, started);
    out.startedAt = startedAt;
    out.heldMs = link.heldSince(startedAt, clock);
    return out;
  } finally {
    // Its kv writes count only when the call succeeded.
    if (slot) workerKv.endCall(out !== undefined && !out.error);
    link.callEnded();
  }
}

/** A call that did not reach the guest. */
function notRun(
  memoryBytes: number,
  logsDropped: number,
  error: { kind: FaultKind; message: string },
): WireOutcome {
  clock = performance.now();
  return {
    status: null,
    published: [],
    logs: [],
    fuelUsed: 0,
    ms: 0,
    memoryBytes,
    logsDropped,
    error,
    startedAt: 0,
    heldMs: 0,
  };
}

/** Runs `call` (started at `performance.now()` `started`); sets {@link clock} to when it ended. */
function run(calls: PackedReader, i: number, slot: Slot | undefined, started: number): WireOutcome {
  if (!slot) return notRun(0, 0, { kind: "host", message: "the instance was unloaded" });
  let t0 = started;
  if (!slot.instance) {
    try {
      slot.instance = create(calls.inst(i), slot.module, slot);
    } catch (err) {
      // Whatever it allocated before failing is garbage now: at most its memory cap.
      discarded(slot.module.manifest.limits.memory_bytes);
      const { kind, message } = faultOf(err);
      return notRun(0, slot.logsDroppedBefore, {
        kind,
        message: `restart after fault: ${message}`,
      });
    }
    t0 = performance.now();
  }
  const instance = slot.instance;
  const out = instance.callJoined(calls.joined(i), calls.topicLength(i)) as WireOutcome;
  clock = performance.now();
  out.ms = clock - t0;
  out.memoryBytes = instance.memoryBytes;
  // After a fault the instance may hold broken state: it goes, the next call gets a fresh one.
  if (out.error) drop(slot);
  out.logsDropped = slot.logsDroppedBefore + (slot.instance?.ctx.logsDropped ?? 0);
  return out;
}

/** Lets go of a slot's instance (its log count stays with the slot). */
function drop(slot: Slot): void {
  const instance = slot.instance;
  if (!instance) return;
  slot.logsDroppedBefore += instance.ctx.logsDropped;
  slot.instance = undefined;
  discarded(instance.memoryBytes);
}

function takeSink(): SinkLine[] {
  const out = sink;
  sink = [];
  return out;
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const msg = e.data;
  switch (msg.t) {
    case "init":
      link = new RuntimeLink(msg, post);
      logRate = msg.logRate;
      threadShare = msg.threadShare;
      return;
    case "nn":
      nnLink = new NnLink(msg);
      return;
    case "load": {
      const name = msg.module.manifest.name;
      workerKv.adopt(name, msg.kvUsage);
      workerKv.beginCall(name);
      try {
        const rates: SlotRates = {
          publishRate: new PublishRate(msg.module.manifest),
          thread: new TokenBucket(threadShare.moduleMsPerSecond, threadShare.moduleMsPerSecond),
        };
        const instance = create(msg.inst, msg.module, rates);
        workerKv.endCall(true);
        const kv = workerKv.dirtyOf(name);
        slots.set(msg.inst, {
          module: msg.module,
          instance,
          logsDroppedBefore: 0,
          ...rates,
        });
        post({
          t: "loaded",
          req: msg.req,
          memoryBytes: instance.memoryBytes,
          sink: takeSink(),
          ...(kv ? { kv } : {}),
        });
        workerKv.settle();
      } catch (err) {
        workerKv.endCall(false);
        if (![...slots.values()].some((s) => s.module.manifest.name === name)) {
          workerKv.forget(name);
        }
        post({
          t: "loaded",
          req: msg.req,
          memoryBytes: 0,
          sink: takeSink(),
          error: faultOf(err),
        });
        discarded(msg.module.manifest.limits.memory_bytes);
        collectGarbage();
      }
      return;
    }
    case "unload": {
      const slot = slots.get(msg.inst);
      const name = slot?.module.manifest.name;
      if (slot) drop(slot);
      slots.delete(msg.inst);
      if (name !== undefined && ![...slots.values()].some((s) => s.module.manifest.name === name)) {
        workerKv.forget(name);
      }
      post({ t: "unloaded", req: msg.req, sink: takeSink() });
      collectGarbage();
      return;
    }
    case "run": {
      // After a fault, the instance's later messages in this batch go back to the
      // runtime unrun: it decides (quarantine or retry) before the module runs again.
      // So do all the batch's later messages once its outcomes hold BATCH_PUBLISHED_BYTES:
      // what a batch makes this Worker hold is bounded whatever its modules publish.
      const calls = new PackedReader(msg.calls);
      const outcomes = new Array<WireOutcome | null>(calls.n).fill(null);
      const faulted = new Set<number>();
      /** Each module's last call that succeeded: it carries the batch's kv writes. */
      const lastOk = new Map<string, number>();
      let held = 0;
      clock = performance.now();
      for (let i = 0; i < calls.n; i++) {
        const inst = calls.inst(i);
        if (faulted.has(inst) || held >= BATCH_PUBLISHED_BYTES) continue;
        const slot = slots.get(inst);
        const out = outcomes[i] = guarded(calls, i, slot);
        if (out.error) faulted.add(inst);
        else if (slot) lastOk.set(slot.module.manifest.name, i);
        for (const p of out.published) held += p.topic.length + p.payload.length;
      }
      // The runtime commits all of a batch's effects in one group transaction, so the
      // batch's kv writes go once per module, the last value per key.
      for (const [module, i] of lastOk) {
        const kv = workerKv.dirtyOf(module);
        if (kv) outcomes[i]!.kv = kv;
      }
      const nums = new Float64Array(calls.n * OUT_FIELDS);
      const extra: OutcomeExtra[] = [];
      outcomes.forEach((out, i) => {
        if (out) packOutcome(nums, extra, i, out);
      });
      self.postMessage(
        {
          t: "ran",
          req: msg.req,
          outcomes: { nums, extra },
          sink: takeSink(),
        } satisfies FromWorker,
        [nums.buffer],
      );
      workerKv.settle();
      collectGarbage();
      return;
    }
  }
};
