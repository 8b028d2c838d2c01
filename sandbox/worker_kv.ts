/**
 * A module's kv as its sandbox Worker sees it: a bounded read cache in front
 * of the runtime's store, the writes of the call running now (kept apart until
 * the call succeeds), the writes of the batch being run (they go back with its
 * outcomes and commit with the calls' other effects, see `kv.ts`) and each
 * module's usage against its quota.
 *
 * @module
 */
import { EdgeError, HostQuotaError, type ModuleContext, type TokenBucket } from "./host/context.ts";
import { hostCost } from "./costs.ts";
import { keyStringAt, type KvStore, type KvWrite } from "./kv.ts";
import type { LinkAnswer } from "./worker_link.ts";

/** Values up to this size are kept in the read cache. */
const KV_CACHE_VALUE_BYTES = 4096;
/** Bytes the read cache holds in this Worker before it starts over (see {@link KV_ENTRY_BYTES}). */
const KV_CACHE_BYTES = 8 << 20;
/**
 * What an entry costs beside its key and value: the Map slot, the string and
 * the array's headers. Counted, so a module asking for millions of distinct
 * missing keys (each cached as `null`) cannot grow the cache past its bound.
 */
const KV_ENTRY_BYTES = 96;

/**
 * A value as this Worker keeps it: one of up to {@link SMALL_VALUE} bytes as
 * a string of one char per byte (no buffer of its own: making a Uint8Array
 * costs some 300 ns here, more than the whole kv call), a larger one as bytes.
 */
type Value = Uint8Array | string;

/** Values up to this size are kept as strings (see {@link Value}). */
const SMALL_VALUE = 64;

/** A copy of bytes [at, at+n) of `mem` (the guest's memory, valid only during the call) to keep. */
function keep(mem: Uint8Array, at: number, n: number): Value {
  return n > SMALL_VALUE ? mem.slice(at, at + n) : keyStringAt(mem, at, n);
}

/** The bytes of `v`. */
function bytesOf(v: Value): Uint8Array {
  if (typeof v !== "string") return v;
  const b = new Uint8Array(v.length);
  for (let i = 0; i < v.length; i++) b[i] = v.charCodeAt(i);
  return b;
}

/** Copies `v` to `out` at `at` (which has room). */
function copyInto(v: Value, out: Uint8Array, at: number): void {
  if (typeof v !== "string") out.set(v, at);
  else for (let i = 0; i < v.length; i++) out[at + i] = v.charCodeAt(i);
}

/** The instance a kv or sensor call comes from: its fuel and its module's share of the thread. */
export interface Caller {
  ctx?: ModuleContext;
  thread: TokenBucket;
}

/** The writes of the call running now (kept out of everything else until it succeeds). */
interface CallKv {
  module: string;
  /** Value per key (see {@link keyString}). */
  writes: Map<string, Value>;
  /** Usage change of those writes. */
  delta: number;
}

/** Asks the runtime's thread for a key instance `inst` missed, within `thread`'s share. */
export type KvMiss = (inst: number, key: Uint8Array, thread: TokenBucket) => LinkAnswer;

const missCost = hostCost("edge.kv_get.miss");

/** The kv state of every module in one sandbox Worker. */
export class WorkerKv {
  /**
   * Read cache of kv entries, per module: a kv_get round trip to the runtime's
   * thread costs 20-200 µs (a wake-up of each thread), a hit well under one.
   * Only instances of a module read or write its kv, and they all run in this
   * Worker while it holds a slot of that module (a swap keeps the Worker), so
   * every write passes here. The module's entries go when its last slot here is
   * unloaded (it moved, or was removed and its kv maybe deleted); the runtime
   * only loads it elsewhere after that unload. `null` caches "no such key".
   */
  readonly #cache = new Map<string, Map<string, Value | null>>();
  #cacheBytes = 0;
  /**
   * Writes of calls that succeeded in the batch being run, per module: the
   * runtime learns of them only with the batch's answer, so until it is posted
   * they must be found here whatever the cache drops.
   */
  readonly #dirty = new Map<string, Map<string, Value>>();
  /** Each module's kv usage in bytes: committed, plus every write made here since. */
  readonly #usage = new Map<string, number>();
  #call: CallKv | null = null;
  readonly #miss: KvMiss;

  /** The kv of this Worker, asking `miss` for what it does not hold. */
  constructor(miss: KvMiss) {
    this.#miss = miss;
  }

  #cachePut(module: string, k: string, value: Value | null): void {
    let entries = this.#cache.get(module);
    const size = KV_ENTRY_BYTES + k.length + (value?.length ?? 0);
    if (value && value.length > KV_CACHE_VALUE_BYTES) {
      entries?.delete(k);
      return;
    }
    if (this.#cacheBytes + size > KV_CACHE_BYTES) {
      this.#cache.clear();
      this.#cacheBytes = 0;
      entries = undefined;
    }
    if (!entries) this.#cache.set(module, entries = new Map());
    entries.set(k, value);
    this.#cacheBytes += size; // over-counts replaced entries: the cache starts over a little early
  }

  /**
   * The newest value of `key` for `module` (null: none), asking the runtime
   * only on a miss; the miss is charged to the host function the guest called
   * (`kv_set` looks the old value up too: its quota counts what it replaces).
   */
  #lookup(
    inst: number,
    module: string,
    caller: Caller,
    mem: Uint8Array,
    kp: number,
    kl: number,
    k: string,
    fn: "kv_get" | "kv_set",
  ): Value | null {
    if (this.#call?.module === module) {
      const w = this.#call.writes.get(k);
      if (w !== undefined) return w;
    }
    const dirty = this.#dirty.get(module)?.get(k);
    if (dirty !== undefined) return dirty;
    const hit = this.#cache.get(module)?.get(k);
    if (hit !== undefined) return hit;
    // A miss costs a round trip to the runtime's thread: charged before it is made.
    caller.ctx?.charge(missCost, 0, fn);
    const { code, bytes } = this.#miss(inst, mem.slice(kp, kp + kl), caller.thread);
    if (code === EdgeError.NOT_FOUND) {
      this.#cachePut(module, k, null);
      return null;
    }
    if (code === EdgeError.QUOTA) throw new HostQuotaError(fn);
    if (code < 0) throw new Error(`kv_get failed (${code})`);
    const value = keep(bytes, 0, bytes.length);
    this.#cachePut(module, k, value);
    return value;
  }

  /**
   * The kv store instance `inst` of `module` uses (its calls come from
   * `caller`). It reads keys and values in the guest's memory by range
   * (`readAt`, `setAt`: no views to make per call) and keeps copies of what
   * it is given.
   */
  storeFor(inst: number, module: string, caller: Caller): KvStore {
    const refuse = () => {
      throw new Error("not available in a sandbox Worker");
    };
    const lookup = (mem: Uint8Array, kp: number, kl: number, fn: "kv_get" | "kv_set") =>
      this.#lookup(inst, module, caller, mem, kp, kl, keyStringAt(mem, kp, kl), fn);
    const set = (
      mem: Uint8Array,
      kp: number,
      kl: number,
      vp: number,
      vl: number,
      maxBytes: number,
    ): "ok" | "quota" => {
      const k = keyStringAt(mem, kp, kl);
      const old = this.#lookup(inst, module, caller, mem, kp, kl, k, "kv_set");
      const used = this.#usage.get(module) ?? 0;
      const delta = (old !== null ? -(kl + old.length) : 0) + kl + vl;
      if (used + delta > maxBytes) return "quota";
      if (this.#call?.module !== module) this.#call = { module, writes: new Map(), delta: 0 };
      this.#call.writes.set(k, keep(mem, vp, vl));
      this.#call.delta += delta;
      this.#usage.set(module, used + delta);
      return "ok";
    };
    return {
      get: (_module, key) => {
        const v = lookup(key, 0, key.length, "kv_get");
        return v === null ? undefined : typeof v === "string" ? bytesOf(v) : v.slice();
      },
      readAt: (_module, mem, kp, kl, op, oc) => {
        const v = lookup(mem, kp, kl, "kv_get");
        if (v === null) return -1;
        if (v.length <= oc) copyInto(v, mem, op);
        return v.length;
      },
      set: (_module, key, value, maxBytes) => {
        // Key and value side by side, so they can be read by range like the guest's memory.
        const both = new Uint8Array(key.length + value.length);
        both.set(key);
        both.set(value, key.length);
        return set(both, 0, key.length, key.length, value.length, maxBytes);
      },
      setAt: (_module, mem, kp, kl, vp, vl, maxBytes) => set(mem, kp, kl, vp, vl, maxBytes),
      usage: refuse,
      clear: refuse,
    };
  }

  /** Takes `usage` as `module`'s committed kv usage unless this Worker already counts it. */
  adopt(module: string, usage: number): void {
    if (!this.#usage.has(module)) this.#usage.set(module, usage);
  }

  /** The call state, reused from call to call (its map is empty between calls). */
  readonly #idle: CallKv = { module: "", writes: new Map(), delta: 0 };

  /** Starts collecting the kv writes of one call (or initialiser) of `module`. */
  beginCall(module: string): void {
    const c = this.#call = this.#idle;
    c.module = module;
    c.writes.clear();
    c.delta = 0;
  }

  /**
   * Ends the call: on success its writes join the batch's (last value per key);
   * on a fault they never happened.
   */
  endCall(ok: boolean): void {
    const c = this.#call;
    this.#call = null;
    if (!c || c.writes.size === 0) return;
    if (!ok) {
      this.#usage.set(c.module, (this.#usage.get(c.module) ?? 0) - c.delta);
    } else {
      let dirty = this.#dirty.get(c.module);
      if (!dirty) this.#dirty.set(c.module, dirty = new Map());
      for (const [k, w] of c.writes) dirty.set(k, w);
    }
    c.writes.clear();
  }

  /** The writes of `module` in this batch (or load), last value per key. */
  dirtyOf(module: string): KvWrite[] | undefined {
    const dirty = this.#dirty.get(module);
    if (!dirty || dirty.size === 0) return undefined;
    const writes: KvWrite[] = [];
    for (const [k, v] of dirty) writes.push({ key: bytesOf(k), value: bytesOf(v) });
    return writes;
  }

  /** The batch's answer is posted: the runtime has its writes from now on. */
  settle(): void {
    for (const [module, dirty] of this.#dirty) {
      for (const [k, v] of dirty) this.#cachePut(module, k, v);
    }
    this.#dirty.clear();
  }

  /** Drops everything this Worker keeps of `module`'s kv. */
  forget(module: string): void {
    this.#cache.delete(module);
    this.#dirty.delete(module);
    this.#usage.delete(module);
  }
}
