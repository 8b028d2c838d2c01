/**
 * Test helper: a real Mosquitto broker on a free loopback port with its own
 * configuration, and `mosquitto_sub` observers that collect messages.
 *
 * @module
 */

/** Options for {@linkcode startMosquitto}. */
export interface MosquittoOptions {
  /** Port to listen on; a free one when unset (keep it to restart on the same port). */
  port?: number;
  /** Keep sessions and queued messages across a graceful restart. @default {false} */
  persistence?: boolean;
  /** Directory for config and persistence (reuse it to restart). */
  dir?: string;
  /** TLS listener settings (PEM paths). */
  tls?: { cafile: string; certfile: string; keyfile: string; requireCertificate?: boolean };
  /** Extra config lines. */
  extra?: string[];
}

/** A running broker. */
export interface Mosquitto {
  port: number;
  /** `mqtt://127.0.0.1:PORT` (or `mqtts://` with TLS). */
  url: string;
  dir: string;
  /**
   * Whether `dispose` removes the directory: it was made for this broker, or
   * for the one {@linkcode restartMosquitto} started this one again from.
   */
  ownsDir: boolean;
  options: MosquittoOptions;
  /** Stops it (SIGTERM saves persistence; SIGKILL does not). */
  stop(signal?: Deno.Signal): Promise<void>;
  /**
   * Stops it and removes its directory if it owns it (see `ownsDir`).
   */
  dispose(): Promise<void>;
  /** Broker log so far. */
  log(): Promise<string>;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      if (Date.now() > deadline) {
        throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Starts mosquitto and waits until it accepts connections. */
export function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  return launch(options, options.dir === undefined);
}

/** Starts mosquitto with `options`; `ownDir`: its directory is removed by `dispose`. */
async function launch(options: MosquittoOptions, ownDir: boolean): Promise<Mosquitto> {
  const port = options.port ?? freePort();
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "edged-mosq-" });
  // Started as root, mosquitto drops to its own user, which must still be
  // able to write the persistence file here.
  await Deno.chmod(dir, 0o777);
  const lines = [
    `listener ${port} 127.0.0.1`,
    "allow_anonymous true",
    `persistence ${options.persistence ? "true" : "false"}`,
    `persistence_location ${dir}/`,
    "max_queued_messages 0",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
  ];
  if (options.tls) {
    lines.push(
      `cafile ${options.tls.cafile}`,
      `certfile ${options.tls.certfile}`,
      `keyfile ${options.tls.keyfile}`,
      `require_certificate ${options.tls.requireCertificate ? "true" : "false"}`,
    );
  }
  lines.push(...(options.extra ?? []));
  await Deno.writeTextFile(`${dir}/mosquitto.conf`, lines.join("\n") + "\n");
  const logFile = await Deno.open(`${dir}/mosquitto.log`, {
    write: true,
    create: true,
    append: true,
  });
  const child = new Deno.Command("mosquitto", {
    args: ["-c", `${dir}/mosquitto.conf`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logDone = child.stderr.pipeTo(logFile.writable).catch(() => {});
  try {
    await Promise.race([
      waitForPort(port, 5000),
      child.status.then((s) => {
        throw new Error(`mosquitto exited with ${s.code}`);
      }),
    ]);
  } catch (err) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    await logDone;
    const log = await Deno.readTextFile(`${dir}/mosquitto.log`).catch(() => "");
    if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(`${(err as Error).message}\n${log}`);
  }
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    try {
      child.kill(signal);
    } catch { /* gone */ }
    await child.status;
    await logDone;
  };
  return {
    port,
    url: `${options.tls ? "mqtts" : "mqtt"}://127.0.0.1:${port}`,
    dir,
    ownsDir: ownDir,
    options: { ...options, port, dir },
    stop,
    async dispose() {
      await stop();
      if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
    log: () => Deno.readTextFile(`${dir}/mosquitto.log`).catch(() => ""),
  };
}

/** Starts the same broker again (same port, same directory). */
export function restartMosquitto(m: Mosquitto): Promise<Mosquitto> {
  return launch(m.options, m.ownsDir);
}

/** One message as `mosquitto_sub -F %j` prints it. */
export interface SubMessage {
  topic: string;
  payload: string | null;
  retain: number;
  qos: number;
}

/** A running `mosquitto_sub`. */
export interface Subscriber {
  messages: SubMessage[];
  /** Resolves once `pred` holds for the messages, or rejects after `timeoutMs`. */
  waitFor(pred: (msgs: SubMessage[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  stop(): Promise<void>;
}

/** `-h 127.0.0.1 -p PORT -q 1`: how `mosquitto_pub` and `mosquitto_sub` reach the broker. */
function clientArgs(broker: { port: number }): string[] {
  return ["-h", "127.0.0.1", "-p", String(broker.port), "-q", "1"];
}

/** Options for {@linkcode spawnSub}. */
export interface SpawnSubOptions {
  /** Client id with a persistent session (`-c`), so messages queue while it reconnects. */
  sessionId?: string;
  /** Exit after this many messages (`-C`). */
  count?: number;
  /** Output format (`-F`), e.g. `%j` for JSON lines. */
  format?: string;
  /** Extra mosquitto_sub arguments (e.g. TLS). */
  args?: string[];
  /** Where its stdout goes. @default {"null"} */
  stdout?: "piped" | "null";
}

/** Starts `mosquitto_sub` (MQTT 5, QoS 1) on `topics`. */
export function spawnSub(
  broker: { port: number },
  topics: string[],
  options: SpawnSubOptions = {},
): Deno.ChildProcess {
  return new Deno.Command("mosquitto_sub", {
    args: [
      ...clientArgs(broker),
      "-V",
      "5",
      ...topics.flatMap((t) => ["-t", t]),
      ...(options.format ? ["-F", options.format] : []),
      ...(options.count !== undefined ? ["-C", String(options.count)] : []),
      ...(options.sessionId ? ["-c", "-i", options.sessionId, "-x", "3600"] : []),
      ...(options.args ?? []),
    ],
    stdin: "null",
    stdout: options.stdout ?? "null",
    stderr: "null",
  }).spawn();
}

/** Options for {@linkcode subscribe}. */
export type SubscribeOptions = Pick<SpawnSubOptions, "sessionId" | "args">;

/**
 * Runs `mosquitto_sub` at QoS 1 on `topic` and collects JSON lines; resolves
 * once its SUBACK has surely arrived (a probe message came back).
 */
export async function subscribe(
  broker: { port: number },
  topic: string,
  options: SubscribeOptions = {},
): Promise<Subscriber> {
  const probe = `edged-test-probe/${crypto.randomUUID()}`;
  const child = spawnSub(broker, [topic, probe], {
    format: "%j",
    sessionId: options.sessionId,
    args: options.args,
    stdout: "piped",
  });
  const messages: SubMessage[] = [];
  let probed = false;
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const m = JSON.parse(line) as SubMessage;
        if (m.topic === probe) probed = true;
        else messages.push(m);
      }
    }
  })();
  const sub: Subscriber = {
    messages,
    async waitFor(pred, timeoutMs = 15000, what = "condition") {
      const deadline = Date.now() + timeoutMs;
      while (!pred(messages)) {
        if (Date.now() > deadline) {
          throw new Error(
            `timed out after ${timeoutMs} ms waiting for ${what} (${messages.length} messages)`,
          );
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await reading.catch(() => {});
    },
  };
  const deadline = Date.now() + 5000;
  while (!probed) {
    await pub(broker, probe, "probe", { args: options.args });
    await new Promise((r) => setTimeout(r, 50));
    if (Date.now() > deadline) {
      await sub.stop();
      throw new Error("mosquitto_sub did not subscribe within 5 s");
    }
  }
  return sub;
}

/** Publishes one message with `mosquitto_pub`. */
export async function pub(
  broker: { port: number },
  topic: string,
  payload: string,
  options: { retain?: boolean; args?: string[] } = {},
): Promise<void> {
  const out = await new Deno.Command("mosquitto_pub", {
    args: [
      ...clientArgs(broker),
      "-t",
      topic,
      "-m",
      payload,
      ...(options.retain ? ["-r"] : []),
      ...(options.args ?? []),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`mosquitto_pub failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** The retained message on `topic`, if any (`mosquitto_sub --retained-only -C 1`). */
export async function retained(broker: { port: number }, topic: string): Promise<string | null> {
  const out = await new Deno.Command("mosquitto_sub", {
    args: [
      "-h",
      "127.0.0.1",
      "-p",
      String(broker.port),
      "-t",
      topic,
      "--retained-only",
      "-C",
      "1",
      "-W",
      "1",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  return text === "" ? null : text;
}
