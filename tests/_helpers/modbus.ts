/**
 * Test helper: a real Modbus server (Debian's python3-pymodbus, driven by
 * `modbus_server.py` beside this file) on a free loopback port or a
 * pseudo-terminal, with its datastore set and read over the child's stdin.
 *
 * @module
 */

const SCRIPT = new URL("./modbus_server.py", import.meta.url).pathname;
const PYTHON = "/usr/bin/python3";

/** The four Modbus tables. */
export type ModbusTable = "holding" | "input" | "coil" | "discrete";

/** Register types pymodbus encodes and decodes. */
export type WordType = "int16" | "uint16" | "int32" | "uint32" | "float32" | "float64";

/** Options of {@linkcode startModbusServer}. */
export interface ModbusServerOptions {
  /** `socket` (Modbus TCP) or `rtu` (RTU frames over TCP). @default {"socket"} */
  framing?: "socket" | "rtu";
  /** Serve RTU on a pseudo-terminal instead of TCP. */
  serial?: boolean;
  /** A fixed port (to come back on the same one after {@linkcode ModbusServer.stop}). */
  port?: number;
  /** The unit id served; others get no answer. @default {1} */
  unit?: number;
  /** Addresses per table. @default {1000} */
  size?: number;
}

/** A running server. */
export interface ModbusServer {
  /** TCP port (0 for serial). */
  port: number;
  /** The adapter `url` that reaches it. */
  url: string;
  options: ModbusServerOptions;
  set(table: ModbusTable, address: number, values: number[]): Promise<void>;
  get(table: ModbusTable, address: number, count?: number): Promise<number[]>;
  /** Stores `value` as `type`, encoded by pymodbus (its BinaryPayloadBuilder). */
  put(
    table: ModbusTable,
    address: number,
    type: WordType,
    value: number,
    wordOrder?: "big" | "little",
  ): Promise<number[]>;
  /** Reads `type` at `address`, decoded by pymodbus (its BinaryPayloadDecoder). */
  read(
    table: ModbusTable,
    address: number,
    type: WordType,
    wordOrder?: "big" | "little",
  ): Promise<number>;
  /** Requests touching `address` get exception `code` (0: no answer; with `delayMs`: the right answer, late). */
  fault(table: ModbusTable, address: number, code: number, delayMs?: number): Promise<void>;
  clear(): Promise<void>;
  /** Requests the server has handled. */
  requests(): Promise<number>;
  /** Ends it (SIGKILL: a device that vanishes). */
  stop(): Promise<void>;
}

/** Starts the server and waits until it serves. */
export async function startModbusServer(options: ModbusServerOptions = {}): Promise<ModbusServer> {
  const args = [
    SCRIPT,
    "--unit",
    String(options.unit ?? 1),
    "--size",
    String(options.size ?? 1000),
  ];
  if (options.serial) args.push("--serial");
  else args.push("--framing", options.framing ?? "socket", "--port", String(options.port ?? 0));
  const child = new Deno.Command(PYTHON, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stderr = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr = (stderr + chunk).slice(-4000);
    }
  })();
  let buf = "";
  const readLine = async (): Promise<string> => {
    while (true) {
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        return line;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error(`modbus server ended: ${stderr}`);
      buf += value;
    }
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    await writer.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await stderrDone.catch(() => {});
  };
  let first: { port?: number; serial?: string };
  try {
    const timer = setTimeout(() => void stop(), 15_000);
    try {
      first = JSON.parse(await readLine());
    } finally {
      clearTimeout(timer);
    }
  } catch (err) {
    await stop();
    throw new Error(`modbus server did not start: ${(err as Error).message}`);
  }
  const enc = new TextEncoder();
  let chain: Promise<unknown> = Promise.resolve();
  const command = (cmd: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const run = chain.then(async () => {
      await writer.write(enc.encode(JSON.stringify(cmd) + "\n"));
      const answer = JSON.parse(await readLine());
      if (!answer.ok) throw new Error(`modbus server: ${answer.error}`);
      return answer;
    });
    chain = run.catch(() => {});
    return run;
  };
  const port = first.port ?? 0;
  const scheme = options.framing === "rtu" ? "rtu+tcp" : "tcp";
  return {
    port,
    url: first.serial
      ? `rtu://${first.serial}?baud=19200&parity=none`
      : `${scheme}://127.0.0.1:${port}`,
    options,
    async set(table, address, values) {
      await command({ op: "set", table, address, values });
    },
    async get(table, address, count = 1) {
      return (await command({ op: "get", table, address, count })).values as number[];
    },
    async put(table, address, type, value, wordOrder = "big") {
      const a = await command({ op: "put", table, address, type, value, word_order: wordOrder });
      return a.registers as number[];
    },
    async read(table, address, type, wordOrder = "big") {
      return (await command({ op: "read", table, address, type, word_order: wordOrder }))
        .value as number;
    },
    async fault(table, address, code, delayMs = 0) {
      await command({ op: "fault", table, address, code, delay_ms: delayMs });
    },
    async clear() {
      await command({ op: "clear" });
    },
    async requests() {
      return (await command({ op: "requests" })).requests as number;
    },
    stop,
  };
}
