/**
 * The WASI preview 1 subset of ABI v1 (import module `wasi_snapshot_preview1`;
 * WebAssembly/WASI `legacy/preview1/docs.md`): enough for wasi-libc, Rust,
 * TinyGo and AssemblyScript modules to start, print and read the clock.
 * stdout and stderr go to the module log line by line; there are no files,
 * no arguments and no environment.
 *
 * Written here rather than taken from a shim library: the subset is ~150 lines,
 * every call must bounds-check against a memory capped by the manifest and
 * answer errno instead of throwing, and `fd_write` must feed the rate-limited log.
 *
 * @module
 */

import type { FuncType, ValType } from "../wasm/parse.ts";
import type { ModuleContext } from "./context.ts";
import { MAX_LOG_BYTES } from "./edge.ts";
import { hostCost } from "../costs.ts";

/** The import module name of WASI preview 1. */
export const WASI_MODULE = "wasi_snapshot_preview1";

/** WASI `errno` values used here (preview 1, `errno` enum). */
export const Errno = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  INVAL: 28,
  NOSYS: 52,
  NOTCAPABLE: 76,
  SPIPE: 70,
} as const;

/** Thrown by `proc_exit` to unwind the guest; the caller turns it into a fault. */
export class WasiExit extends Error {
  constructor(readonly code: number) {
    super(`module called proc_exit(${code})`);
    this.name = "WasiExit";
  }
}

const sig = (params: string, results = "i"): FuncType => {
  const t = (c: string): ValType => (c === "I" ? "i64" : "i32");
  return { params: [...params].map(t), results: [...results].map(t) };
};

/** Type of every preview 1 function (i = i32, I = i64). */
export const WASI_SIGNATURES: Record<string, FuncType> = {
  args_get: sig("ii"),
  args_sizes_get: sig("ii"),
  environ_get: sig("ii"),
  environ_sizes_get: sig("ii"),
  clock_res_get: sig("ii"),
  clock_time_get: sig("iIi"),
  fd_advise: sig("iIIi"),
  fd_allocate: sig("iII"),
  fd_close: sig("i"),
  fd_datasync: sig("i"),
  fd_fdstat_get: sig("ii"),
  fd_fdstat_set_flags: sig("ii"),
  fd_fdstat_set_rights: sig("iII"),
  fd_filestat_get: sig("ii"),
  fd_filestat_set_size: sig("iI"),
  fd_filestat_set_times: sig("iIIi"),
  fd_pread: sig("iiiIi"),
  fd_prestat_get: sig("ii"),
  fd_prestat_dir_name: sig("iii"),
  fd_pwrite: sig("iiiIi"),
  fd_read: sig("iiii"),
  fd_readdir: sig("iiiIi"),
  fd_renumber: sig("ii"),
  fd_seek: sig("iIii"),
  fd_sync: sig("i"),
  fd_tell: sig("ii"),
  fd_write: sig("iiii"),
  path_create_directory: sig("iii"),
  path_filestat_get: sig("iiiii"),
  path_filestat_set_times: sig("iiiiIIi"),
  path_link: sig("iiiiiii"),
  path_open: sig("iiiiiIIii"),
  path_readlink: sig("iiiiii"),
  path_remove_directory: sig("iii"),
  path_rename: sig("iiiiii"),
  path_symlink: sig("iiiii"),
  path_unlink_file: sig("iii"),
  poll_oneoff: sig("iiii"),
  proc_exit: sig("i", ""),
  proc_raise: sig("i"),
  random_get: sig("ii"),
  sched_yield: sig(""),
  sock_accept: sig("iii"),
  sock_recv: sig("iiiiii"),
  sock_send: sig("iiiii"),
  sock_shutdown: sig("ii"),
};

const lossy = new TextDecoder();

/** Flushes complete lines written to fd 1/2 into the log; `final` flushes the rest too. */
export function flushOutput(ctx: ModuleContext, final: boolean): void {
  for (const [fd, text] of ctx.pendingOutput) {
    const level = fd === 2 ? 2 : 1;
    const lines = text.split("\n");
    const rest = lines.pop()!;
    for (const line of lines) ctx.log(level, line);
    if (final && rest) ctx.log(level, rest);
    if (!final && rest) ctx.pendingOutput.set(fd, rest);
    else ctx.pendingOutput.delete(fd);
  }
}

/**
 * Builds the `wasi_snapshot_preview1` import object. Every function charges
 * its cost (`costs.ts`) before it does the work; `fd_write` and `random_get`
 * by the bytes too.
 */
export function wasiImports(ctx: ModuleContext): Record<string, (...args: never[]) => unknown> {
  const view = () => new DataView(ctx.memory!.buffer);
  const ok = (ptr: number, len: number) => ctx.bytes(ptr, len) !== null;
  const nosys = () => Errno.NOSYS;
  const badf = () => Errno.BADF;
  const fns: Record<string, (...args: never[]) => unknown> = {};
  for (const name of Object.keys(WASI_SIGNATURES)) {
    // Files, paths and sockets: there are none (preopens answer EBADF, so libc sees no directories).
    fns[name] = name.startsWith("fd_") ? badf : nosys;
  }

  const emptyList = (countPtr: number, sizePtr: number): number => {
    if (!ok(countPtr, 4) || !ok(sizePtr, 4)) return Errno.FAULT;
    view().setUint32(countPtr >>> 0, 0, true);
    view().setUint32(sizePtr >>> 0, 0, true);
    return Errno.SUCCESS;
  };
  fns.args_sizes_get = emptyList;
  fns.environ_sizes_get = emptyList;
  fns.args_get = () => Errno.SUCCESS;
  fns.environ_get = () => Errno.SUCCESS;

  // clockid: 0 realtime, 1 monotonic, 2 process cputime, 3 thread cputime.
  fns.clock_time_get = (id: number, _precision: bigint, out: number): number => {
    if (id < 0 || id > 3) return Errno.INVAL;
    if (!ok(out, 8)) return Errno.FAULT;
    const ns = id === 0
      ? BigInt(Date.now()) * 1_000_000n
      : BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
    view().setBigUint64(out >>> 0, ns, true);
    return Errno.SUCCESS;
  };
  fns.clock_res_get = (id: number, out: number): number => {
    if (id < 0 || id > 3) return Errno.INVAL;
    if (!ok(out, 8)) return Errno.FAULT;
    view().setBigUint64(out >>> 0, 1_000n, true);
    return Errno.SUCCESS;
  };
  const randomCost = hostCost(`${WASI_MODULE}.random_get`);
  fns.random_get = (buf: number, len: number): number => {
    const b = ctx.bytes(buf, len);
    ctx.charge(randomCost, b?.length ?? 0, "random_get");
    if (!b) return Errno.FAULT;
    // getRandomValues refuses views over 65536 bytes and views on shared/resizable buffers.
    const tmp = new Uint8Array(Math.min(b.length, 65536));
    for (let off = 0; off < b.length; off += tmp.length) {
      crypto.getRandomValues(tmp);
      b.set(tmp.subarray(0, Math.min(tmp.length, b.length - off)), off);
    }
    return Errno.SUCCESS;
  };
  fns.sched_yield = () => Errno.SUCCESS;
  fns.proc_exit = (code: number): never => {
    throw ctx.unwind(new WasiExit(code));
  };
  fns.proc_raise = nosys;

  // fdstat (preview 1 `fdstat`, 24 bytes): filetype u8 @0, flags u16 @2, rights u64 @8 and @16.
  fns.fd_fdstat_get = (fd: number, out: number): number => {
    if (fd < 0 || fd > 2) return Errno.BADF;
    if (!ok(out, 24)) return Errno.FAULT;
    const v = view();
    const p = out >>> 0;
    new Uint8Array(v.buffer, p, 24).fill(0);
    v.setUint8(p, 2); // character_device: libc treats it as a tty and line-buffers
    v.setBigUint64(p + 8, fd === 0 ? 0x2n : 0x40n, true); // fd_read or fd_write
    return Errno.SUCCESS;
  };
  fns.fd_close = (fd: number) => (fd >= 0 && fd <= 2 ? Errno.SUCCESS : Errno.BADF);
  fns.fd_seek = (fd: number) => (fd >= 0 && fd <= 2 ? Errno.SPIPE : Errno.BADF);
  fns.fd_fdstat_set_flags = (fd: number) => (fd >= 0 && fd <= 2 ? Errno.SUCCESS : Errno.BADF);
  fns.fd_prestat_get = badf;

  // iovec (preview 1 `ciovec`): buf u32 @0, buf_len u32 @4.
  const iovecs = (iovs: number, count: number): Uint8Array[] | number => {
    const n = count >>> 0;
    if (n > 1024 || !ok(iovs, n * 8)) return Errno.FAULT;
    const v = view();
    const out: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const b = ctx.bytes(
        v.getUint32((iovs >>> 0) + i * 8, true),
        v.getUint32((iovs >>> 0) + i * 8 + 4, true),
      );
      if (!b) return Errno.FAULT;
      out.push(b);
    }
    return out;
  };
  const writeCost = hostCost(`${WASI_MODULE}.fd_write`);
  fns.fd_write = (fd: number, iovs: number, count: number, written: number): number => {
    ctx.charge(writeCost, 0, "fd_write");
    if (fd !== 1 && fd !== 2) return Errno.BADF;
    const bufs = iovecs(iovs, count);
    if (typeof bufs === "number") return bufs;
    if (!ok(written, 4)) return Errno.FAULT;
    let total = 0;
    for (const b of bufs) total += b.length;
    ctx.charge({ base: 0, perByte: writeCost.perByte }, total, "fd_write");
    let text = ctx.pendingOutput.get(fd) ?? "";
    for (const b of bufs) {
      // Past the line limit the rest is cut anyway: decoding it would be work for nothing.
      if (text.length > 4 * MAX_LOG_BYTES) break;
      text += lossy.decode(b.subarray(0, 4 * MAX_LOG_BYTES + 1));
    }
    // A line longer than the log limit is cut, like a log() call would be.
    if (text.length > 4 * MAX_LOG_BYTES) text = text.slice(0, MAX_LOG_BYTES) + "\n";
    ctx.pendingOutput.set(fd, text);
    flushOutput(ctx, false);
    view().setUint32(written >>> 0, total, true);
    return Errno.SUCCESS;
  };
  fns.fd_read = (fd: number, _iovs: number, _count: number, nread: number): number => {
    if (fd !== 0) return Errno.BADF;
    if (!ok(nread, 4)) return Errno.FAULT;
    view().setUint32(nread >>> 0, 0, true); // stdin is empty: end of file
    return Errno.SUCCESS;
  };
  // Every other function costs its base.
  for (const [name, fn] of Object.entries(fns)) {
    if (name === "fd_write" || name === "random_get") continue;
    const cost = hostCost(`${WASI_MODULE}.${name}`);
    fns[name] = (...args: never[]): unknown => {
      ctx.charge(cost, 0, name);
      return fn(...args);
    };
  }
  return fns;
}
