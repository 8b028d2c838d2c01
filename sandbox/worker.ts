/// <reference lib="deno.worker" />
/**
 * A sandbox Worker: started by {@link WorkerPool} with
 * `deno.permissions: "none"`, it holds many module instances and runs the
 * batches of messages the runtime's thread sends. It cannot read, write, open
 * sockets or run programs; `kv_get`, `kv_set` and `sensor_read` are answered
 * by the runtime's thread through a shared buffer while this thread waits
 * (Atomics.wait), so the host functions stay synchronous for the guest.
 *
 * @module
 */

import { type FaultKind, ModuleFault } from "./errors.ts";
import {
  EdgeError,
  HostQuotaError,
  type ModuleContext,
  PublishRate,
  TokenBucket,
} from "./host/context.ts";
import { hostCost } from "./costs.ts";
import { GuestInstance, type RunnableModule } from "./instance.ts";
import type { KvStore } from "./kv.ts";
import { nnGuest } from "./nn/host.ts";
import { NnLink } from "./nn/link.ts";
import {
  CALL_INST,
  CALL_START,
  clockMs,
  type FromWorker,
  type LogRate,
  RPC_DATA_OFFSET,
  RPC_RESULT,
  RPC_SEQ,
  RPC_TIMEOUT_MS,
  type RpcRequest,
  type SinkLine,
  type ThreadShare,
  type ToWorker,
  type WireCall,
  type WireOutcome,
} from "./pool_protocol.ts";

interface Slot {
  module: RunnableModule;
  instance: GuestInstance | undefined;
  /** After a fault the instance may hold broken state: the next call gets a fresh one. */
  needsReset: boolean;
  /** Log lines dropped by earlier instances of this slot. */
  logsDroppedBefore: number;
  /** What the module may publish per second: the slot's, so a fault does not reset it. */
  publishRate: PublishRate;
  /** The module's share of the runtime's thread (ms), for its kv and sensor round trips. */
  thread: TokenBucket;
}

/** The rates a slot keeps across its instances. */
type SlotRates = Pick<Slot, "publishRate" | "thread">;

const enc = new TextEncoder();
const slots = new Map<number, Slot>();
let sab: SharedArrayBuffer;
let ctrl: Int32Array;
let logRate: LogRate = { perSecond: 20, burst: 100 };
let threadShare: ThreadShare = { moduleMsPerSecond: 50, workerMsPerSecond: 200 };
/** The share of the runtime's thread all this Worker's modules' round trips may take (ms). */
let workerThread = new TokenBucket(200, 200);
let epoch = 0;
let seq = 0;
let sink: SinkLine[] = [];
let nnLink: NnLink | undefined;

function post(msg: FromWorker): void {
  self.postMessage(msg);
}

/**
 * Asks the runtime's thread and waits for the answer: a byte count (bytes
 * follow) or a code. The round trip is spent from the module's and the
 * Worker's share of that thread (`share`); while either is used up, the call
 * is not made and answers QUOTA, so whatever a module does, its kv and sensor
 * calls take a bounded part of the thread that serves ingest.
 */
function rpc(req: RpcRequest, share: TokenBucket): { code: number; bytes: Uint8Array } {
  if (!share.available() || !workerThread.available()) {
    return { code: EdgeError.QUOTA, bytes: new Uint8Array(0) };
  }
  const t0 = performance.now();
  try {
    return roundTrip(req);
  } finally {
    const ms = performance.now() - t0;
    share.spend(ms);
    workerThread.spend(ms);
  }
}

function roundTrip(req: RpcRequest): { code: number; bytes: Uint8Array } {
  post(req);
  const deadline = performance.now() + RPC_TIMEOUT_MS;
  for (;;) {
    const answered = Atomics.load(ctrl, RPC_SEQ);
    if (answered === req.seq) break;
    const left = deadline - performance.now();
    if (left <= 0) return { code: EdgeError.IO, bytes: new Uint8Array(0) };
    Atomics.wait(ctrl, RPC_SEQ, answered, left);
  }
  const code = Atomics.load(ctrl, RPC_RESULT);
  return { code, bytes: code > 0 ? new Uint8Array(sab, RPC_DATA_OFFSET, code) : new Uint8Array(0) };
}

/** Published bytes a batch's outcomes may hold before the rest of the batch goes back unrun. */
const BATCH_PUBLISHED_BYTES = 32 << 20;

/** Values up to this size are kept in {@link kvCache}. */
const KV_CACHE_VALUE_BYTES = 4096;
/** Bytes of keys and values {@link kvCache} holds in this Worker before it starts over. */
const KV_CACHE_BYTES = 8 << 20;

/**
 * Read cache of kv entries, per module: a kv_get round trip to the runtime's
 * thread costs 20-200 µs (a wake-up of each thread), a hit well under one.
 * Only instances of a module read or write its kv, and they all run in this
 * Worker while it holds a slot of that module (a swap keeps the Worker), so
 * every write passes here: kv_set writes through and updates the entry. The
 * module's entries go when its last slot here is unloaded (it moved, or was
 * removed and its kv maybe deleted); the runtime only loads it elsewhere
 * after that unload. `null` caches "no such key".
 */
const kvCache = new Map<string, Map<string, Uint8Array | null>>();
let kvCacheBytes = 0;

function cacheKey(key: Uint8Array): string {
  let s = "";
  for (let i = 0; i < key.length; i++) s += String.fromCharCode(key[i]);
  return s;
}

function cachePut(module: string, k: string, value: Uint8Array | null): void {
  let entries = kvCache.get(module);
  const size = k.length + (value?.length ?? 0);
  if (value && value.length > KV_CACHE_VALUE_BYTES) {
    entries?.delete(k);
    return;
  }
  if (kvCacheBytes + size > KV_CACHE_BYTES) {
    kvCache.clear();
    kvCacheBytes = 0;
    entries = undefined;
  }
  if (!entries) kvCache.set(module, entries = new Map());
  entries.set(k, value);
  kvCacheBytes += size; // over-counts replaced entries: the cache starts over a little early
}

/** The instance a kv or sensor call comes from: its fuel and its module's share of the thread. */
interface Caller {
  ctx?: ModuleContext;
  thread: TokenBucket;
}

const missCost = hostCost("edge.kv_get.miss");

function kvFor(inst: number, module: string, caller: Caller): KvStore {
  const refuse = () => {
    throw new Error("not available in a sandbox Worker");
  };
  return {
    get(_module, key) {
      const k = cacheKey(key);
      const hit = kvCache.get(module)?.get(k);
      if (hit !== undefined) return hit === null ? undefined : hit.slice();
      // A miss costs a round trip to the runtime's thread: charged before it is made.
      caller.ctx?.charge(missCost, 0, "kv_get");
      const { code, bytes } = rpc(
        { t: "rpc", seq: ++seq, inst, op: "kv_get", key: key.slice() },
        caller.thread,
      );
      if (code === EdgeError.NOT_FOUND) {
        cachePut(module, k, null);
        return undefined;
      }
      if (code === EdgeError.QUOTA) throw new HostQuotaError("kv_get");
      if (code < 0) throw new Error(`kv_get failed (${code})`);
      const value = bytes.slice();
      cachePut(module, k, value);
      return value.slice();
    },
    set(_module, key, value) {
      const k = cacheKey(key);
      const { code } = rpc({ t: "rpc", seq: ++seq, inst, op: "kv_set", key, value }, caller.thread);
      if (code === EdgeError.QUOTA) return "quota";
      if (code < 0) {
        kvCache.get(module)?.delete(k); // unknown now
        throw new Error(`kv_set failed (${code})`);
      }
      cachePut(module, k, value.slice());
      return "ok";
    },
    usage: refuse,
    clear: refuse,
  };
}

function create(inst: number, module: RunnableModule, slot: SlotRates): GuestInstance {
  const name = module.manifest.name;
  const caller: Caller = { thread: slot.thread };
  return GuestInstance.create(module, {
    kv: module.manifest.grants.kv ? kvFor(inst, name, caller) : undefined,
    publishRate: slot.publishRate,
    bind: (ctx) => caller.ctx = ctx,
    sensor: (path, out) => {
      const { code, bytes } = rpc(
        { t: "rpc", seq: ++seq, inst, op: "sensor", path, cap: out.length },
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

/** Runs one call with the wall-clock guard's stamps set (see CALL_INST in pool_protocol.ts). */
function guarded(call: WireCall, slot: Slot | undefined): WireOutcome {
  const startedAt = clockMs(epoch);
  Atomics.store(ctrl, CALL_START, startedAt);
  Atomics.store(ctrl, CALL_INST, call.inst);
  try {
    const out = run(call, slot);
    return { ...out, startedAt, heldMs: (clockMs(epoch) - startedAt) | 0 };
  } finally {
    Atomics.store(ctrl, CALL_INST, 0);
  }
}

function run(call: WireCall, slot: Slot | undefined): Omit<WireOutcome, "startedAt" | "heldMs"> {
  const empty = { status: null, published: [], logs: [], fuelUsed: 0, ms: 0 };
  if (!slot) {
    return {
      ...empty,
      memoryBytes: 0,
      logsDropped: 0,
      error: { kind: "host", message: "the instance was unloaded" },
    };
  }
  if (slot.needsReset || !slot.instance) {
    try {
      slot.logsDroppedBefore += slot.instance?.ctx.logsDropped ?? 0;
      slot.instance = undefined;
      slot.instance = create(call.inst, slot.module, slot);
      slot.needsReset = false;
    } catch (err) {
      const { kind, message } = faultOf(err);
      return {
        ...empty,
        memoryBytes: 0,
        logsDropped: slot.logsDroppedBefore,
        error: { kind, message: `restart after fault: ${message}` },
      };
    }
  }
  const instance = slot.instance;
  const t0 = performance.now();
  const out = instance.call(enc.encode(call.topic), call.payload);
  const ms = performance.now() - t0;
  if (out.error) slot.needsReset = true;
  return {
    ...out,
    ms,
    memoryBytes: instance.memoryBytes,
    logsDropped: slot.logsDroppedBefore + instance.ctx.logsDropped,
  };
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
      sab = msg.sab;
      ctrl = new Int32Array(sab, 0, 4);
      logRate = msg.logRate;
      threadShare = msg.threadShare;
      workerThread = new TokenBucket(threadShare.workerMsPerSecond, threadShare.workerMsPerSecond);
      epoch = msg.epoch;
      return;
    case "nn":
      nnLink = new NnLink(msg);
      return;
    case "load": {
      try {
        const rates: SlotRates = {
          publishRate: new PublishRate(msg.module.manifest),
          thread: new TokenBucket(threadShare.moduleMsPerSecond, threadShare.moduleMsPerSecond),
        };
        const instance = create(msg.inst, msg.module, rates);
        slots.set(msg.inst, {
          module: msg.module,
          instance,
          needsReset: false,
          logsDroppedBefore: 0,
          ...rates,
        });
        post({ t: "loaded", req: msg.req, memoryBytes: instance.memoryBytes, sink: takeSink() });
      } catch (err) {
        post({
          t: "loaded",
          req: msg.req,
          memoryBytes: 0,
          sink: takeSink(),
          error: faultOf(err),
        });
      }
      return;
    }
    case "unload": {
      const name = slots.get(msg.inst)?.module.manifest.name;
      slots.delete(msg.inst);
      if (name !== undefined && ![...slots.values()].some((s) => s.module.manifest.name === name)) {
        kvCache.delete(name);
      }
      post({ t: "unloaded", req: msg.req, sink: takeSink() });
      return;
    }
    case "run": {
      // After a fault, the instance's later messages in this batch go back to the
      // runtime unrun: it decides (quarantine or retry) before the module runs again.
      // So do all the batch's later messages once its outcomes hold BATCH_PUBLISHED_BYTES:
      // what a batch makes this Worker hold is bounded whatever its modules publish.
      const faulted = new Set<number>();
      let held = 0;
      const outcomes = msg.calls.map((call) => {
        if (faulted.has(call.inst) || held >= BATCH_PUBLISHED_BYTES) return null;
        const out = guarded(call, slots.get(call.inst));
        if (out.error) faulted.add(call.inst);
        for (const p of out.published) held += p.topic.length + p.payload.length;
        return out;
      });
      post({ t: "ran", req: msg.req, outcomes, sink: takeSink() });
      return;
    }
  }
};
