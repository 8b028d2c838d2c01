/**
 * The `edge` host functions of ABI v1 (docs/modules.md, "The ABI (v1)"). Each checks
 * every pointer and length against the module's memory and answers a negative
 * {@link EdgeError} code instead of throwing: a host exception never reaches
 * the guest or the runtime.
 *
 * @module
 */

import { posix } from "node:path";
import type { FuncType } from "../wasm/parse.ts";
import type { Manifest } from "../manifest.ts";
import { topicMatches, topicProblem } from "../../lib/mod.ts";
import { MAX_KEY_BYTES } from "../kv.ts";
import { hostCost } from "../costs.ts";
import { ModuleFault } from "../errors.ts";
import { EdgeError, HostQuotaError, type ModuleContext } from "./context.ts";

const i32 = "i32" as const;
const four = { params: [i32, i32, i32, i32], results: [i32] };

/** Type of every `edge` function. */
export const EDGE_SIGNATURES: Record<string, FuncType> = {
  log: { params: [i32, i32, i32], results: [] },
  publish: four,
  sensor_read: four,
  kv_get: four,
  kv_set: four,
  now_ms: { params: [], results: ["i64"] },
};

/** Which manifest grant enables an `edge` function. */
export function grantFor(fn: string): { key: string; granted: (m: Manifest) => boolean } {
  switch (fn) {
    case "log":
      return { key: "log", granted: (m) => m.grants.log };
    case "publish":
      return { key: "publish", granted: (m) => m.grants.publish.length > 0 };
    case "sensor_read":
      return { key: "sensor", granted: (m) => m.grants.sensor.length > 0 };
    case "kv_get":
    case "kv_set":
      return { key: "kv", granted: (m) => m.grants.kv !== undefined };
    default:
      return { key: "clock", granted: (m) => m.grants.clock };
  }
}

/** Bytes one `log` call may carry. */
export const MAX_LOG_BYTES = 1024;
/** Bytes one `sensor_read` returns at most. */
export const MAX_SENSOR_BYTES = 65536;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Lossy = new TextDecoder();

/** Something that tells whether a path matches (a RegExp qualifies). */
export interface PathMatcher {
  test(path: string): boolean;
}

/**
 * Compiles a sensor path glob: `**` any depth, `*` and `?` within one segment.
 * Kept for callers that want a RegExp; the host matches with
 * {@linkcode globMatcher}, whose time does not explode on patterns like
 * `/**a**a**a**b` (a backtracking RegExp did, inside a host call that fuel
 * does not bound, stalling every module).
 */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      re += ".*";
      i++;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

type GlobToken = "**" | "*" | "?" | { c: string };

/**
 * The same glob as {@linkcode globToRegExp}, matched by dynamic programming
 * over (pattern token, path position): O(pattern × path) for any pattern.
 */
export function globMatcher(glob: string): PathMatcher {
  const tokens: GlobToken[] = [];
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      tokens.push("**");
      i++;
    } else if (c === "*" || c === "?") tokens.push(c);
    else tokens.push({ c });
  }
  return {
    test(path: string): boolean {
      const n = path.length;
      // at[i]: the tokens so far can match exactly path[0, i).
      let at = new Uint8Array(n + 1);
      at[0] = 1;
      for (const t of tokens) {
        const next = new Uint8Array(n + 1);
        if (t === "**" || t === "*") {
          let on = 0;
          for (let i = 0; i <= n; i++) {
            if (at[i]) on = 1;
            next[i] = on;
            if (t === "*" && path[i] === "/") on = 0;
          }
        } else {
          for (let i = 0; i < n; i++) {
            if (at[i] && (t === "?" ? path[i] !== "/" : path[i] === t.c)) next[i + 1] = 1;
          }
        }
        at = next;
      }
      return at[n] === 1;
    },
  };
}

/**
 * Trees whose symlinks are made by the kernel, not by users: sysfs class
 * paths such as `/sys/class/hwmon/hwmon0` are links into `/sys/devices/...`,
 * so a grant written on the class path (as an operator would write it) could
 * never match the real path. A link inside one of these trees that resolves
 * inside the same tree is followed.
 */
export const KERNEL_LINK_TREES: readonly string[] = ["/sys/"];

/**
 * Resolves a guest's sensor path and checks it against the grants: the
 * lexically normalised path must match a grant, and so must the path with
 * every symlink resolved (unless both lie in the same kernel-made tree, see
 * {@linkcode KERNEL_LINK_TREES}), so neither `..` nor a link can lead
 * outside them. Returns the real path, or an error code.
 */
export function resolveSensorPath(
  path: string,
  grants: PathMatcher[],
  kernelTrees: readonly string[] = KERNEL_LINK_TREES,
): string | number {
  if (!path.startsWith("/") || path.includes("\0")) return EdgeError.INVALID;
  const normal = posix.normalize(path);
  if (!grants.some((g) => g.test(normal))) return EdgeError.DENIED;
  let real: string;
  try {
    real = Deno.realPathSync(normal);
  } catch {
    return EdgeError.NOT_FOUND;
  }
  if (grants.some((g) => g.test(real))) return real;
  const tree = kernelTrees.find((t) => normal.startsWith(t));
  if (tree !== undefined && real.startsWith(tree)) return real;
  return EdgeError.DENIED;
}

/**
 * `sensor_read` done in this thread: {@linkcode resolveSensorPath}, then at
 * most `out.length` (and {@linkcode MAX_SENSOR_BYTES}) bytes of the regular
 * file read into `out`. Answers the byte count or a negative code.
 */
export function readGrantedSensor(path: string, grants: PathMatcher[], out: Uint8Array): number {
  const real = resolveSensorPath(path, grants);
  return typeof real === "number" ? real : readSensor(real, out);
}

function readSensor(real: string, out: Uint8Array): number {
  let file: Deno.FsFile | undefined;
  try {
    // Only regular files: a FIFO or device could block the host or never end.
    if (!Deno.statSync(real).isFile) return EdgeError.DENIED;
    file = Deno.openSync(real, { read: true });
    const cap = Math.min(out.length, MAX_SENSOR_BYTES);
    let n = 0;
    while (n < cap) {
      const got = file.readSync(out.subarray(n, cap));
      if (got === null || got === 0) break;
      n += got;
    }
    return n;
  } catch {
    return EdgeError.IO;
  } finally {
    file?.close();
  }
}

/**
 * Builds the `edge` import object with exactly the functions `ctx.manifest`
 * grants. Each charges its cost (`costs.ts`) before it does the work; a call
 * that runs out of fuel there ends with a `fuel` fault.
 */
export function edgeImports(ctx: ModuleContext): Record<string, (...args: never[]) => unknown> {
  const m = ctx.manifest;
  const fns: Record<string, (...args: never[]) => unknown> = {};
  const limits = m.limits;
  const sensorGrants = m.grants.sensor.map(globMatcher);

  if (m.grants.log) {
    const cost = hostCost("edge.log");
    fns.log = (level: number, ptr: number, len: number): void => {
      const all = ctx.bytes(ptr, len);
      if (!all) {
        ctx.charge(cost, 0, "log");
        ctx.log(3, `[edged] log: bad pointer or length (ptr ${ptr}, len ${len})`);
        return;
      }
      const n = all.length;
      // What is read is at most MAX_LOG_BYTES: a longer line costs no more.
      ctx.charge(cost, Math.min(n, MAX_LOG_BYTES), "log");
      if (!ctx.wantsLog()) {
        ctx.dropLog(); // a flood past every limit: counted, not even decoded
        return;
      }
      const text = utf8Lossy.decode(all.subarray(0, MAX_LOG_BYTES)) +
        (n > MAX_LOG_BYTES ? ` [truncated from ${n} bytes]` : "");
      ctx.log(Math.max(0, Math.min(3, level | 0)), text);
    };
  }

  if (m.grants.publish.length > 0) {
    const cost = hostCost("edge.publish");
    // A refused publish costs its base; the bytes are charged only when they are taken.
    const perByte = { base: 0, perByte: cost.perByte };
    fns.publish = (tp: number, tl: number, pp: number, pl: number): number => {
      ctx.charge(cost, 0, "publish");
      const tb = ctx.bytes(tp, tl);
      const pb = ctx.bytes(pp, pl);
      if (!tb || !pb) return EdgeError.FAULT;
      const bytes = tb.length + pb.length;
      if (pb.length > limits.max_payload_bytes || tb.length > 65535) return EdgeError.TOO_BIG;
      let topic: string;
      try {
        topic = utf8.decode(tb);
      } catch {
        return EdgeError.INVALID;
      }
      if (topicProblem(topic)) return EdgeError.INVALID;
      if (!m.grants.publish.some((f) => topicMatches(f, topic))) return EdgeError.DENIED;
      const call = ctx.call;
      if (
        call.published.length >= limits.publish_messages_per_call ||
        call.publishedBytes + bytes > limits.publish_bytes_per_call ||
        !ctx.publishRate.take(bytes)
      ) {
        return EdgeError.QUOTA;
      }
      ctx.charge(perByte, bytes, "publish");
      call.published.push({ topic, payload: pb.slice() });
      call.publishedBytes += bytes;
      return 0;
    };
  }

  if (sensorGrants.length > 0) {
    const cost = hostCost("edge.sensor_read");
    fns.sensor_read = (pp: number, pl: number, op: number, oc: number): number => {
      const pb = ctx.bytes(pp, pl);
      const out = ctx.bytes(op, oc);
      if (!pb || !out || pb.length > 4096) {
        ctx.charge(cost, 0, "sensor_read");
        return EdgeError.FAULT;
      }
      // Charged on what may be read (the buffer, at most MAX_SENSOR_BYTES), before reading.
      ctx.charge(cost, Math.min(out.length, MAX_SENSOR_BYTES), "sensor_read");
      let path: string;
      try {
        path = utf8.decode(pb);
      } catch {
        return EdgeError.INVALID;
      }
      return ctx.sensor ? ctx.sensor(path, out) : readGrantedSensor(path, sensorGrants, out);
    };
  }

  if (m.grants.kv && ctx.kv) {
    const kv = ctx.kv;
    const { max_bytes: maxBytes, max_value_bytes: maxValue } = m.grants.kv;
    const getCost = hostCost("edge.kv_get");
    const setCost = hostCost("edge.kv_set");
    const getPerByte = { base: 0, perByte: getCost.perByte };
    const { readAt, setAt } = kv;
    fns.kv_get = (kp: number, kl: number, op: number, oc: number): number => {
      if (readAt) {
        // The same checks and charges as below, on ranges of the memory instead of views.
        const mem = ctx.memoryFor(kp, kl);
        const fits = mem !== null && ctx.memoryFor(op, oc) !== null;
        ctx.charge(getCost, mem ? kl >>> 0 : 0, "kv_get");
        if (!mem || !fits) return EdgeError.FAULT;
        if (kl >>> 0 > MAX_KEY_BYTES) return EdgeError.TOO_BIG;
        try {
          const n = readAt.call(kv, ctx.name, mem, kp >>> 0, kl >>> 0, op >>> 0, oc >>> 0);
          if (n < 0) return EdgeError.NOT_FOUND;
          if (n > oc >>> 0) return EdgeError.TOO_BIG;
          ctx.charge(getPerByte, n, "kv_get");
          return n;
        } catch (err) {
          if (err instanceof ModuleFault) throw err;
          return err instanceof HostQuotaError ? EdgeError.QUOTA : EdgeError.IO;
        }
      }
      const key = ctx.bytes(kp, kl);
      const out = ctx.bytes(op, oc);
      ctx.charge(getCost, key?.length ?? 0, "kv_get");
      if (!key || !out) return EdgeError.FAULT;
      if (key.length > MAX_KEY_BYTES) return EdgeError.TOO_BIG;
      try {
        const value = kv.get(ctx.name, key);
        if (value === undefined) return EdgeError.NOT_FOUND;
        if (value.length > out.length) return EdgeError.TOO_BIG;
        ctx.charge(getPerByte, value.length, "kv_get");
        out.set(value);
        return value.length;
      } catch (err) {
        if (err instanceof ModuleFault) throw err;
        return err instanceof HostQuotaError ? EdgeError.QUOTA : EdgeError.IO;
      }
    };
    fns.kv_set = (kp: number, kl: number, vp: number, vl: number): number => {
      if (setAt) {
        // The same checks and charges as below, on ranges of the memory instead of views.
        const mem = ctx.memoryFor(kp, kl);
        if (!mem || !ctx.memoryFor(vp, vl)) {
          ctx.charge(setCost, 0, "kv_set");
          return EdgeError.FAULT;
        }
        const k = kl >>> 0;
        const v = vl >>> 0;
        if (k === 0 || k > MAX_KEY_BYTES || v > maxValue) {
          ctx.charge(setCost, 0, "kv_set");
          return k === 0 ? EdgeError.INVALID : EdgeError.TOO_BIG;
        }
        ctx.charge(setCost, k + v, "kv_set");
        try {
          return setAt.call(kv, ctx.name, mem, kp >>> 0, k, vp >>> 0, v, maxBytes) === "ok"
            ? 0
            : EdgeError.QUOTA;
        } catch (err) {
          if (err instanceof ModuleFault) throw err;
          return err instanceof HostQuotaError ? EdgeError.QUOTA : EdgeError.IO;
        }
      }
      const key = ctx.bytes(kp, kl);
      const value = ctx.bytes(vp, vl);
      if (!key || !value) {
        ctx.charge(setCost, 0, "kv_set");
        return EdgeError.FAULT;
      }
      if (key.length === 0 || key.length > MAX_KEY_BYTES || value.length > maxValue) {
        ctx.charge(setCost, 0, "kv_set");
        return key.length === 0 ? EdgeError.INVALID : EdgeError.TOO_BIG;
      }
      ctx.charge(setCost, key.length + value.length, "kv_set");
      try {
        return kv.set(ctx.name, key, value, maxBytes) === "ok" ? 0 : EdgeError.QUOTA;
      } catch (err) {
        if (err instanceof ModuleFault) throw err;
        // kv_set of a key its Worker has not seen asks the runtime for the old value.
        return err instanceof HostQuotaError ? EdgeError.QUOTA : EdgeError.IO;
      }
    };
  }

  if (m.grants.clock) {
    const cost = hostCost("edge.now_ms");
    // An i64 result must be a BigInt; making one costs ~100 ns, so reuse it within the millisecond.
    let lastMs = -1;
    let lastBig = 0n;
    fns.now_ms = (): bigint => {
      ctx.charge(cost, 0, "now_ms");
      const ms = Date.now();
      if (ms !== lastMs) {
        lastMs = ms;
        lastBig = BigInt(ms);
      }
      return lastBig;
    };
  }
  return fns;
}
