/// <reference lib="deno.worker" />
/**
 * A sandbox Worker: started by {@link WorkerPool} with
 * `deno.permissions: "none"`, it holds many module instances and runs the
 * batches of messages the runtime's thread sends. It cannot read, write, open
 * sockets or run programs; `kv_get` misses and `sensor_read` are answered by
 * the runtime's thread through a shared buffer while this thread waits
 * (Atomics.wait), so the host functions stay synchronous for the guest.
 * `kv_set` is kept here: a batch's writes go back with its outcomes and the
 * runtime commits them with the calls' other effects (see `kv.ts`).
 *
 * @module
 */

import v8 from "node:v8";
import vm from "node:vm";
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
import { keyString, type KvStore, type KvWrite } from "./kv.ts";
import { nnGuest } from "./nn/host.ts";
import { NnLink } from "./nn/link.ts";
import {
  CALL_INST,
  CALL_START,
  clockMs,
  CTRL_WORDS,
  type FromWorker,
  type LogRate,
  RPC_COST_US,
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
 * follow) or a code. What serving it cost that thread (it measures and says)
 * is spent from the module's and the Worker's share of it (`share`); while
 * either is used up, the call is not made and answers QUOTA, so whatever a
 * module does, its kv and sensor calls take a bounded part of the thread that
 * serves ingest. (The cost, not the round trip: time the request waits in the
 * runtime's queue is not work done for it.)
 */
function rpc(req: RpcRequest, share: TokenBucket): { code: number; bytes: Uint8Array } {
  if (!share.available() || !workerThread.available()) {
    return { code: EdgeError.QUOTA, bytes: new Uint8Array(0) };
  }
  const answer = roundTrip(req);
  const ms = Atomics.load(ctrl, RPC_COST_US) / 1000;
  share.spend(ms);
  workerThread.spend(ms);
  return answer;
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
/** Bytes {@link kvCache} holds in this Worker before it starts over (see {@link KV_ENTRY_BYTES}). */
const KV_CACHE_BYTES = 8 << 20;
/**
 * What an entry costs beside its key and value: the Map slot, the string and
 * the array's headers. Counted, so a module asking for millions of distinct
 * missing keys (each cached as `null`) cannot grow the cache past its bound.
 */
const KV_ENTRY_BYTES = 96;

/**
 * Read cache of kv entries, per module: a kv_get round trip to the runtime's
 * thread costs 20-200 µs (a wake-up of each thread), a hit well under one.
 * Only instances of a module read or write its kv, and they all run in this
 * Worker while it holds a slot of that module (a swap keeps the Worker), so
 * every write passes here. The module's entries go when its last slot here is
 * unloaded (it moved, or was removed and its kv maybe deleted); the runtime
 * only loads it elsewhere after that unload. `null` caches "no such key".
 */
const kvCache = new Map<string, Map<string, Uint8Array | null>>();
let kvCacheBytes = 0;

/**
 * Writes of calls that succeeded in the batch being run, per module: the
 * runtime learns of them only with the batch's answer, so until it is posted
 * they must be found here whatever the cache drops.
 */
const kvDirty = new Map<string, Map<string, KvWrite>>();

/** Each module's kv usage in bytes: committed, plus every write made here since. */
const kvUsage = new Map<string, number>();

/** The writes of the call running now (kept out of everything else until it succeeds). */
interface CallKv {
  module: string;
  writes: Map<string, KvWrite>;
  /** Usage change of those writes. */
  delta: number;
}
let callKv: CallKv | null = null;

function cachePut(module: string, k: string, value: Uint8Array | null): void {
  let entries = kvCache.get(module);
  const size = KV_ENTRY_BYTES + k.length + (value?.length ?? 0);
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

/**
 * The newest value of `key` for `module` (null: none), asking the runtime
 * only on a miss; the miss is charged to the host function the guest called
 * (`kv_set` looks the old value up too: its quota counts what it replaces).
 */
function kvLookup(
  inst: number,
  module: string,
  caller: Caller,
  key: Uint8Array,
  k: string,
  fn: "kv_get" | "kv_set",
): Uint8Array | null {
  if (callKv?.module === module) {
    const w = callKv.writes.get(k);
    if (w) return w.value;
  }
  const dirty = kvDirty.get(module)?.get(k);
  if (dirty) return dirty.value;
  const hit = kvCache.get(module)?.get(k);
  if (hit !== undefined) return hit;
  // A miss costs a round trip to the runtime's thread: charged before it is made.
  caller.ctx?.charge(missCost, 0, fn);
  const { code, bytes } = rpc(
    { t: "rpc", seq: ++seq, inst, op: "kv_get", key: key.slice() },
    caller.thread,
  );
  if (code === EdgeError.NOT_FOUND) {
    cachePut(module, k, null);
    return null;
  }
  if (code === EdgeError.QUOTA) throw new HostQuotaError(fn);
  if (code < 0) throw new Error(`kv_get failed (${code})`);
  const value = bytes.slice();
  cachePut(module, k, value);
  return value;
}

function kvFor(inst: number, module: string, caller: Caller): KvStore {
  const refuse = () => {
    throw new Error("not available in a sandbox Worker");
  };
  return {
    get(_module, key) {
      return kvLookup(inst, module, caller, key, keyString(key), "kv_get")?.slice() ?? undefined;
    },
    set(_module, key, value, maxBytes) {
      const k = keyString(key);
      const old = kvLookup(inst, module, caller, key, k, "kv_set");
      const used = kvUsage.get(module) ?? 0;
      const delta = (old ? -(key.length + old.length) : 0) + key.length + value.length;
      if (used + delta > maxBytes) return "quota";
      if (callKv?.module !== module) callKv = { module, writes: new Map(), delta: 0 };
      callKv.writes.set(k, { key, value });
      callKv.delta += delta;
      kvUsage.set(module, used + delta);
      return "ok";
    },
    usage: refuse,
    clear: refuse,
  };
}

/** Starts collecting the kv writes of one call (or initialiser) of `module`. */
function beginCall(module: string): void {
  callKv = { module, writes: new Map(), delta: 0 };
}

/**
 * Ends the call: on success its writes join the batch's (last value per key);
 * on a fault they never happened.
 */
function endCall(ok: boolean): void {
  const c = callKv;
  callKv = null;
  if (!c || c.writes.size === 0) return;
  if (!ok) {
    kvUsage.set(c.module, (kvUsage.get(c.module) ?? 0) - c.delta);
    return;
  }
  let dirty = kvDirty.get(c.module);
  if (!dirty) kvDirty.set(c.module, dirty = new Map());
  for (const [k, w] of c.writes) dirty.set(k, w);
}

/** The writes of `module` in this batch (or load), last value per key. */
function dirtyOf(module: string): KvWrite[] | undefined {
  const dirty = kvDirty.get(module);
  return dirty && dirty.size > 0 ? [...dirty.values()] : undefined;
}

/** The batch's answer is posted: the runtime has its writes from now on. */
function settleDirty(): void {
  for (const [module, dirty] of kvDirty) {
    for (const [k, w] of dirty) cachePut(module, k, w.value);
  }
  kvDirty.clear();
}

/** Drops everything this Worker keeps of `module`'s kv. */
function forget(module: string): void {
  kvCache.delete(module);
  kvDirty.delete(module);
  kvUsage.delete(module);
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
  if (slot) beginCall(slot.module.manifest.name);
  let out: Omit<WireOutcome, "startedAt" | "heldMs"> | undefined;
  try {
    out = run(call, slot);
    return { ...out, startedAt, heldMs: (clockMs(epoch) - startedAt) | 0 };
  } finally {
    // Its kv writes count only when the call succeeded.
    if (slot) endCall(out !== undefined && !out.error);
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
  if (!slot.instance) {
    try {
      slot.instance = create(call.inst, slot.module, slot);
    } catch (err) {
      // Whatever it allocated before failing is garbage now: at most its memory cap.
      discarded(slot.module.manifest.limits.memory_bytes);
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
  const memoryBytes = instance.memoryBytes;
  // After a fault the instance may hold broken state: it goes, the next call gets a fresh one.
  if (out.error) drop(slot);
  return {
    ...out,
    ms,
    memoryBytes,
    logsDropped: slot.logsDroppedBefore + (slot.instance?.ctx.logsDropped ?? 0),
  };
}

/** Lets go of a slot's instance (its log count stays with the slot). */
function drop(slot: Slot): void {
  const instance = slot.instance;
  if (!instance) return;
  slot.logsDroppedBefore += instance.ctx.logsDropped;
  slot.instance = undefined;
  discarded(instance.memoryBytes);
}

/** Linear memory of instances let go of since the last collection (bytes). */
let garbageBytes = 0;
/** A collection runs once this much linear memory is garbage. */
const COLLECT_AFTER_BYTES = 16 << 20;

/**
 * `gc()` of this isolate. V8 frees a dropped instance's linear memory only
 * when it collects, and left alone it lets hundreds of megabytes of them pile
 * up (measured: a module faulting with 16 MiB touched swung RSS between 100
 * and 385 MiB); so after faults and unloads this Worker collects itself once
 * {@link COLLECT_AFTER_BYTES} have been let go of. `--expose-gc` set from here
 * applies to contexts made afterwards, so the function comes from a new one.
 * Undefined where that is not possible (then V8 collects when it decides to).
 */
const collect: (() => void) | undefined = (() => {
  try {
    v8.setFlagsFromString("--expose-gc");
    return vm.runInNewContext("gc") as () => void;
  } catch {
    return undefined;
  }
})();

function discarded(bytes: number): void {
  garbageBytes += bytes;
}

/** Collects when enough linear memory was let go of; call when no answer is waiting on it. */
function collectGarbage(): void {
  if (garbageBytes < COLLECT_AFTER_BYTES || !collect) return;
  garbageBytes = 0;
  collect();
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
      ctrl = new Int32Array(sab, 0, CTRL_WORDS);
      logRate = msg.logRate;
      threadShare = msg.threadShare;
      workerThread = new TokenBucket(threadShare.workerMsPerSecond, threadShare.workerMsPerSecond);
      epoch = msg.epoch;
      return;
    case "nn":
      nnLink = new NnLink(msg);
      return;
    case "load": {
      const name = msg.module.manifest.name;
      if (!kvUsage.has(name)) kvUsage.set(name, msg.kvUsage);
      beginCall(name);
      try {
        const rates: SlotRates = {
          publishRate: new PublishRate(msg.module.manifest),
          thread: new TokenBucket(threadShare.moduleMsPerSecond, threadShare.moduleMsPerSecond),
        };
        const instance = create(msg.inst, msg.module, rates);
        endCall(true);
        const kv = dirtyOf(name);
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
        settleDirty();
      } catch (err) {
        endCall(false);
        if (![...slots.values()].some((s) => s.module.manifest.name === name)) forget(name);
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
        forget(name);
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
      const faulted = new Set<number>();
      /** Each module's last call that succeeded: it carries the batch's kv writes. */
      const lastOk = new Map<string, number>();
      let held = 0;
      const outcomes = msg.calls.map((call, i) => {
        if (faulted.has(call.inst) || held >= BATCH_PUBLISHED_BYTES) return null;
        const slot = slots.get(call.inst);
        const out = guarded(call, slot);
        if (out.error) faulted.add(call.inst);
        else if (slot) lastOk.set(slot.module.manifest.name, i);
        for (const p of out.published) held += p.topic.length + p.payload.length;
        return out;
      });
      // The runtime commits all of a batch's effects in one group transaction, so the
      // batch's kv writes go once per module, the last value per key.
      for (const [module, i] of lastOk) {
        const kv = dirtyOf(module);
        if (kv) outcomes[i]!.kv = kv;
      }
      post({ t: "ran", req: msg.req, outcomes, sink: takeSink() });
      settleDirty();
      collectGarbage();
      return;
    }
  }
};
