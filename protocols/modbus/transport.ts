/**
 * Byte streams to a Modbus device: a TCP socket (`tcp://`, `rtu+tcp://`) or a
 * serial line (`rtu:///dev/ttyUSB0?baud=19200&parity=even&stop_bits=1`).
 *
 * Serial lines: Deno has no termios API, and a native addon cannot go into
 * the single binary. The line is configured with `stty` (coreutils, on every
 * Debian/Alpine/BusyBox system) and then opened as a file: raw mode, 8 data
 * bits, the configured speed, parity and stop bits, no flow control, and
 * `min 0 time 1`, so that a read returns after at most 0.1 s without data and
 * never pins a thread while edged stops.
 *
 * @module
 */
import type { ModbusTarget } from "../../runtime/mod.ts";

/** A connection's byte stream. */
export interface Transport {
  /** Reads into `buf`; the count, or null once the peer closed. */
  read(buf: Uint8Array): Promise<number | null>;
  /** Writes all of `bytes`. */
  write(bytes: Uint8Array): Promise<void>;
  /** Closes it; pending reads end. */
  close(): void;
  /** Bytes that may arrive late on a quiet line are dropped for this long after a timeout. */
  readonly quietMs: number;
}

/** A target for logs and the API (no query string). */
export function describeTarget(t: ModbusTarget): string {
  return t.kind === "tcp"
    ? `${t.framing === "tcp" ? "tcp" : "rtu+tcp"}://${
      t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname
    }:${t.port}`
    : `rtu://${t.path}`;
}

/** Opens the stream; rejects when `signal` aborts first (a timeout or a stop). */
export function openTransport(target: ModbusTarget, signal: AbortSignal): Promise<Transport> {
  return target.kind === "tcp" ? openTcp(target, signal) : openSerial(target, signal);
}

async function openTcp(
  t: Extract<ModbusTarget, { kind: "tcp" }>,
  signal: AbortSignal,
): Promise<Transport> {
  const conn = await Deno.connect({ hostname: t.hostname, port: t.port, signal });
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
  return stream(conn, 100, (buf) => conn.read(buf));
}

/** The `stty` arguments for a Modbus RTU line (8 data bits, raw, no flow control). */
export function sttyArgs(t: Extract<ModbusTarget, { kind: "serial" }>): string[] {
  return [
    "-F",
    t.path,
    String(t.baud),
    "raw",
    "cs8",
    t.stopBits === 2 ? "cstopb" : "-cstopb",
    ...(t.parity === "none" ? ["-parenb"] : ["parenb", t.parity === "odd" ? "parodd" : "-parodd"]),
    "-echo",
    "-ixon",
    "-ixoff",
    "-crtscts",
    "clocal",
    "cread",
    "min",
    "0",
    "time",
    "1",
  ];
}

async function openSerial(
  t: Extract<ModbusTarget, { kind: "serial" }>,
  signal: AbortSignal,
): Promise<Transport> {
  const out = await new Deno.Command("stty", {
    args: sttyArgs(t),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    signal,
  }).output();
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim() || `exit code ${out.code}`;
    throw new Error(`stty could not configure ${t.path}: ${why}`);
  }
  signal.throwIfAborted();
  const file = await Deno.open(t.path, { read: true, write: true });
  // One character is 11 bits (start, 8 data, parity or stop, stop); the line
  // is quiet after 3.5 of them (2.5.1.1), but no less than the 0.1 s VTIME.
  const quietMs = Math.max(100, Math.ceil((11 * 3.5 * 1000) / t.baud));
  const transport = stream(file, quietMs, async (buf) => {
    // With VMIN 0 / VTIME 1 an empty read means "no byte for 0.1 s", not
    // end of file: poll until bytes come or the line is closed.
    while (!transport.closed) {
      let n: number | null;
      try {
        n = await file.read(buf);
      } catch (err) {
        if (transport.closed) return null;
        throw err;
      }
      if (n !== null && n > 0) return n;
    }
    return null;
  });
  return transport;
}

/** A {@linkcode Transport} over a socket or file: whole writes, an idempotent close. */
function stream(
  io: { write(p: Uint8Array): Promise<number>; close(): void },
  quietMs: number,
  read: (buf: Uint8Array) => Promise<number | null>,
): Transport & { readonly closed: boolean } {
  let closed = false;
  return {
    quietMs,
    read,
    get closed() {
      return closed;
    },
    async write(bytes) {
      let off = 0;
      while (off < bytes.length) off += await io.write(bytes.subarray(off));
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        io.close();
      } catch { /* already closed */ }
    },
  };
}
