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
import { EdgeError } from "./host/context.ts";
import { GuestInstance, type RunnableModule } from "./instance.ts";
import type { KvStore } from "./kv.ts";
import {
  type FromWorker,
  type LogRate,
  RPC_DATA_OFFSET,
  RPC_RESULT,
  RPC_SEQ,
  RPC_TIMEOUT_MS,
  type RpcRequest,
  type SinkLine,
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
}

const enc = new TextEncoder();
const slots = new Map<number, Slot>();
let sab: SharedArrayBuffer;
let ctrl: Int32Array;
let logRate: LogRate = { perSecond: 20, burst: 100 };
let seq = 0;
let sink: SinkLine[] = [];

function post(msg: FromWorker): void {
  self.postMessage(msg);
}

/** Asks the runtime's thread and waits for the answer: a byte count (bytes follow) or a code. */
function rpc(req: RpcRequest): { code: number; bytes: Uint8Array } {
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

function kvFor(inst: number): KvStore {
  const refuse = () => {
    throw new Error("not available in a sandbox Worker");
  };
  return {
    get(_module, key) {
      const { code, bytes } = rpc({ t: "rpc", seq: ++seq, inst, op: "kv_get", key: key.slice() });
      if (code === EdgeError.NOT_FOUND) return undefined;
      if (code < 0) throw new Error(`kv_get failed (${code})`);
      return bytes.slice();
    },
    set(_module, key, value) {
      const { code } = rpc({ t: "rpc", seq: ++seq, inst, op: "kv_set", key, value });
      if (code === EdgeError.QUOTA) return "quota";
      if (code < 0) throw new Error(`kv_set failed (${code})`);
      return "ok";
    },
    usage: refuse,
    clear: refuse,
  };
}

function create(inst: number, module: RunnableModule): GuestInstance {
  const name = module.manifest.name;
  return GuestInstance.create(module, {
    kv: module.manifest.grants.kv ? kvFor(inst) : undefined,
    sensor: (path, out) => {
      const { code, bytes } = rpc({
        t: "rpc",
        seq: ++seq,
        inst,
        op: "sensor",
        path,
        cap: out.length,
      });
      if (code > 0) out.set(bytes.subarray(0, Math.min(code, out.length)));
      return code;
    },
    logRate,
    logSink: (_module, level, line) => sink.push({ module: name, level, line }),
  });
}

function faultOf(err: unknown): { kind: FaultKind; message: string } {
  const f = err instanceof ModuleFault ? err : new ModuleFault("host", String(err));
  return { kind: f.kind, message: f.message };
}

function run(call: WireCall, slot: Slot | undefined): WireOutcome {
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
      slot.instance = create(call.inst, slot.module);
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
      return;
    case "load": {
      try {
        const instance = create(msg.inst, msg.module);
        slots.set(msg.inst, {
          module: msg.module,
          instance,
          needsReset: false,
          logsDroppedBefore: 0,
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
    case "unload":
      slots.delete(msg.inst);
      post({ t: "unloaded", req: msg.req, sink: takeSink() });
      return;
    case "run": {
      // After a fault, the instance's later messages in this batch go back to the
      // runtime unrun: it decides (quarantine or retry) before the module runs again.
      const faulted = new Set<number>();
      const outcomes = msg.calls.map((call) => {
        if (faulted.has(call.inst)) return null;
        const out = run(call, slots.get(call.inst));
        if (out.error) faulted.add(call.inst);
        return out;
      });
      post({ t: "ran", req: msg.req, outcomes, sink: takeSink() });
      return;
    }
  }
};
