/**
 * Where a Modbus adapter's device is (`tcp://`, `rtu+tcp://`, `rtu:///dev/...`)
 * and how many registers each point type spans: the parts of the `[adapters]`
 * schema (`adapters_config.ts`) that Modbus code needs at run time, kept apart
 * from zod so that `runtime/mod.ts` does not load it.
 *
 * @module
 */

/** Serial line speeds `stty` accepts for a Modbus line. */
export const MODBUS_BAUD_RATES: readonly number[] = [
  1200,
  2400,
  4800,
  9600,
  19200,
  38400,
  57600,
  115200,
  230400,
];

/** Where and how to reach a Modbus device, parsed from its `url`. */
export type ModbusTarget =
  | { kind: "tcp"; framing: "tcp" | "rtu"; hostname: string; port: number }
  | {
    kind: "serial";
    framing: "rtu";
    path: string;
    baud: number;
    parity: "none" | "even" | "odd";
    stopBits: 1 | 2;
  };

/**
 * Parses a Modbus adapter `url`: `tcp://HOST[:PORT]` (MBAP, port 502 by
 * default), `rtu+tcp://HOST:PORT` (RTU frames through a serial gateway) or
 * `rtu:///dev/DEVICE?baud=9600&parity=even&stop_bits=1` (a serial line; the
 * defaults are the serial line guide's). Throws a `TypeError` naming the
 * problem.
 *
 * @example
 * ```ts
 * parseModbusUrl("tcp://127.0.0.1:5020"); // { kind: "tcp", framing: "tcp", hostname: "127.0.0.1", port: 5020 }
 * ```
 */
export function parseModbusUrl(url: string): ModbusTarget {
  const m = /^(tcp|rtu\+tcp|rtu):\/\/(.*)$/.exec(url);
  if (!m) throw new TypeError("must start with tcp://, rtu+tcp:// or rtu:// (a serial device)");
  if (m[1] === "rtu") return parseSerialUrl(m[2]);
  let u: URL;
  try {
    // Parsed as http so that URL splits host and port; the scheme is ours.
    u = new URL(`http://${m[2]}`);
  } catch {
    throw new TypeError(`'${m[2]}' is not HOST:PORT`);
  }
  if (u.pathname !== "/" || u.search !== "" || u.username !== "" || u.hash !== "" || m[2] === "") {
    throw new TypeError("must be scheme://HOST:PORT with nothing after the port");
  }
  const port = u.port === "" ? 502 : Number(u.port);
  if (port === 0) throw new TypeError("port must be from 1 to 65535");
  const hostname = u.hostname.replace(/^\[(.*)\]$/, "$1");
  return { kind: "tcp", framing: m[1] === "tcp" ? "tcp" : "rtu", hostname, port };
}

function parseSerialUrl(rest: string): ModbusTarget {
  const q = rest.indexOf("?");
  const path = q < 0 ? rest : rest.slice(0, q);
  if (!/^\/dev\/[A-Za-z0-9._\/-]+$/.test(path) || path.includes("..")) {
    throw new TypeError("a serial URL names a device under /dev/, e.g. rtu:///dev/ttyUSB0");
  }
  const params = new URLSearchParams(q < 0 ? "" : rest.slice(q + 1));
  for (const key of params.keys()) {
    if (key !== "baud" && key !== "parity" && key !== "stop_bits") {
      throw new TypeError(`unknown serial parameter '${key}' (known: baud, parity, stop_bits)`);
    }
  }
  // MODBUS over Serial Line V1.02, 2.5.1: even parity by default; 8 data bits always.
  const baud = Number(params.get("baud") ?? 9600);
  if (!MODBUS_BAUD_RATES.includes(baud)) {
    throw new TypeError(
      `baud must be one of ${MODBUS_BAUD_RATES.join(", ")}, got ${params.get("baud")}`,
    );
  }
  const parity = params.get("parity") ?? "even";
  if (parity !== "none" && parity !== "even" && parity !== "odd") {
    throw new TypeError(`parity must be none, even or odd, got ${parity}`);
  }
  const stop = Number(params.get("stop_bits") ?? 1);
  if (stop !== 1 && stop !== 2) throw new TypeError(`stop_bits must be 1 or 2, got ${stop}`);
  return { kind: "serial", framing: "rtu", path, baud, parity, stopBits: stop };
}

/** Registers a value of each point type spans (coils and discrete inputs: one bit). */
export const MODBUS_TYPE_REGISTERS = {
  bool: 1,
  int16: 1,
  uint16: 1,
  int32: 2,
  uint32: 2,
  float32: 2,
  float64: 4,
} as const;
