/**
 * One broker connection at a time, re-established with back-off forever.
 *
 * Each attempt is a fresh `npm:mqtt` client with its own reconnect switched
 * off (`reconnectPeriod: 0`) and a clean session: its in-memory queues die
 * with it, and what must survive lives in the durable outbox instead.
 *
 * @module
 */
import { getLogger } from "../../lib/mod.ts";
import { Buffer } from "node:buffer";
import type { IClientOptions, IConnackPacket, MqttClient } from "mqtt";
import type { Duplex } from "node:stream";
import { backoffDelay } from "./backoff.ts";
// The guards (and node:stream under them) load with npm:mqtt, in Connection.start().
import type { DroppedPacket } from "./packet_guard.ts";

const log = getLogger(["edged", "mqtt"]);

/** Thrown when the TLS files cannot be read. */
export class MqttConfigError extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MqttConfigError";
  }
}

/** Options for {@linkcode Connection}. */
export interface ConnectionOptions {
  /** `mqtt://`, `mqtts://`, `ws://` or `wss://`. */
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  /** PEM files for TLS: CA bundle, client certificate and key (mutual TLS). */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  keepaliveS: number;
  /** 4 is MQTT 3.1.1, 5 is MQTT 5. */
  protocolVersion: 4 | 5;
  connectTimeoutMs: number;
  /**
   * Largest packet taken from the broker: sent as Maximum Packet Size in an
   * MQTT 5 CONNECT; larger PUBLISHes are dropped unread (`packet_guard.ts`).
   */
  maxPacketBytes: number;
  /** An oversized PUBLISH was dropped. */
  onOversized?: (p: DroppedPacket) => void;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /**
   * Last will (MQTT 3.1.1 section 3.1.2.5), published by the broker if we
   * drop; asked for on every attempt so it carries current facts.
   */
  will?: () => { topic: string; payload: string; retain: boolean };
  /** Each CONNACK, with the client to use until `onClose`. */
  onConnect: (client: MqttClient, connack: IConnackPacket) => void;
  /** The connection that `onConnect` announced has closed. */
  onClose: () => void;
  /** A PUBLISH from the broker. */
  onMessage: (
    topic: string,
    payload: Uint8Array,
    properties: { responseTopic?: string; correlationData?: Uint8Array },
  ) => void;
  /** A connection attempt failed. */
  onAttemptFailed?: (err: string) => void;
}

/** `url` without `user:password@`, so credentials never reach a log. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^/]*@/i, "$1");
}

/** Reads the TLS files named in the options into `npm:mqtt` options. */
async function tlsOptions(o: ConnectionOptions): Promise<Partial<IClientOptions>> {
  const read = async (what: string, path?: string) => {
    if (!path) return undefined;
    try {
      return await Deno.readTextFile(path);
    } catch (err) {
      throw new MqttConfigError(`mqtt.${what}: cannot read ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  };
  const [ca, cert, key] = await Promise.all([
    read("ca_file", o.caFile),
    read("cert_file", o.certFile),
    read("key_file", o.keyFile),
  ]);
  if ((cert === undefined) !== (key === undefined)) {
    throw new MqttConfigError("mqtt.cert_file and mqtt.key_file must be set together");
  }
  return { ca, cert, key, rejectUnauthorized: true };
}

/** The stream classes of `socket.ts` and `packet_guard.ts`. */
interface Guards {
  BrokerSocket: typeof import("./socket.ts").BrokerSocket;
  PacketGuard: typeof import("./packet_guard.ts").PacketGuard;
}

/**
 * Guards what the broker sends (`packet_guard.ts`). npm `mqtt` builds its
 * stream in `connect()` (with `manualConnect` we call it) and pipes it into
 * its parser once: for `mqtt://` and `mqtts://` the stream is our own
 * {@linkcode BrokerSocket}, which never copies a dropped packet; for `ws://`
 * and `wss://` the library's stream is kept and a {@linkcode PacketGuard}
 * goes into that pipe.
 */
function guardInbound(
  guards: Guards,
  client: MqttClient,
  o: ConnectionOptions,
  tls: { ca?: string; cert?: string; key?: string },
  onDropped: (p: DroppedPacket) => void,
): void {
  const { BrokerSocket, PacketGuard } = guards;
  const c = client as unknown as { streamBuilder: (c: MqttClient) => Duplex };
  const url = new URL(o.url);
  if (url.protocol === "mqtt:" || url.protocol === "mqtts:") {
    const secure = url.protocol === "mqtts:";
    c.streamBuilder = () =>
      new BrokerSocket({
        hostname: url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(url.port || (secure ? 8883 : 1883)),
        tls: secure ? tls : undefined,
        maxPacketBytes: o.maxPacketBytes,
        onDropped,
      });
    return;
  }
  const build = c.streamBuilder;
  c.streamBuilder = (cl) => {
    const stream = build(cl);
    const pipe = stream.pipe.bind(stream);
    stream.pipe = (<T extends NodeJS.WritableStream>(dest: T, opts?: { end?: boolean }) => {
      const guard = new PacketGuard({
        maxPacketBytes: o.maxPacketBytes,
        send: (bytes) => stream.write(bytes),
        onDropped,
      });
      guard.on("error", (err) => stream.destroy(err));
      pipe(guard);
      return guard.pipe(dest, opts);
    }) as typeof stream.pipe;
    return stream;
  };
}

/**
 * Keeps one connection to the broker, retrying with back-off and jitter.
 *
 * @example
 * ```ts ignore
 * const conn = new Connection({ url: "mqtt://127.0.0.1:1883", ..., onConnect, onClose, onMessage });
 * await conn.start();
 * ```
 */
export class Connection {
  #o: ConnectionOptions;
  #tls: Partial<IClientOptions> = {};
  #tlsFiles: { ca?: string; cert?: string; key?: string } = {};
  #mqtt: typeof import("mqtt").default | undefined;
  #guards: Guards | undefined;
  #client: MqttClient | null = null;
  #live: MqttClient | null = null;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #lastError = "";
  /** Connections established so far. */
  connects = 0;
  /** Attempts that failed so far. */
  failures = 0;

  /** The broker URL without user-info, for logs. */
  #safeUrl: string;

  /** Builds it; nothing connects before {@linkcode start}. */
  constructor(options: ConnectionOptions) {
    this.#o = options;
    this.#safeUrl = redactUrl(options.url);
  }

  /** The client of the live connection, if any. */
  get client(): MqttClient | null {
    return this.#live;
  }

  /**
   * Loads `npm:mqtt` and the packet guards (only now: an edged without a
   * broker never pays their memory, node:stream's included), reads TLS files
   * (failing fast on bad ones) and starts connecting in the background.
   */
  async start(): Promise<void> {
    const [mqtt, { BrokerSocket }, { PacketGuard }] = await Promise.all([
      import("mqtt"),
      import("./socket.ts"),
      import("./packet_guard.ts"),
    ]);
    this.#mqtt = mqtt.default;
    this.#guards = { BrokerSocket, PacketGuard };
    this.#tls = await tlsOptions(this.#o);
    this.#tlsFiles = {
      ca: this.#tls.ca as string | undefined,
      cert: this.#tls.cert as string | undefined,
      key: this.#tls.key as string | undefined,
    };
    this.#connect();
  }

  #connect(): void {
    if (this.#stopped) return;
    const o = this.#o;
    const will = o.will?.();
    const client = this.#mqtt!.connect(o.url, {
      ...this.#tls,
      clientId: o.clientId,
      username: o.username,
      password: o.password,
      keepalive: o.keepaliveS,
      protocolVersion: o.protocolVersion,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: o.connectTimeoutMs,
      resubscribe: false,
      queueQoSZero: false,
      will: will
        ? { topic: will.topic, payload: Buffer.from(will.payload), qos: 1, retain: will.retain }
        : undefined,
      // MQTT 5 section 3.1.2.11.4: the broker must not send larger packets.
      properties: o.protocolVersion === 5 ? { maximumPacketSize: o.maxPacketBytes } : undefined,
      manualConnect: true,
    });
    guardInbound(this.#guards!, client, o, this.#tlsFiles, (p) => o.onOversized?.(p));
    client.connect();
    this.#client = client;
    let established = false;
    client.on("connect", (connack) => {
      if (this.#client !== client) return;
      established = true;
      this.connects++;
      this.#attempt = 0;
      this.#lastError = "";
      this.#live = client;
      log.info("connected to {url} as {clientId}", { url: this.#safeUrl, clientId: o.clientId });
      o.onConnect(client, connack);
    });
    client.on("message", (topic, payload, packet) => {
      if (this.#live !== client) return;
      const p = packet.properties;
      o.onMessage(topic, payload, {
        responseTopic: p?.responseTopic,
        correlationData: p?.correlationData,
      });
    });
    client.on("error", (err) => {
      const msg = err?.message ?? String(err);
      if (msg !== this.#lastError) {
        log.warning("MQTT connection to {url}: {error}", { url: this.#safeUrl, error: msg });
        this.#lastError = msg;
      }
    });
    client.on("close", () => {
      if (this.#client !== client) return;
      this.#client = null;
      client.removeAllListeners("connect");
      client.removeAllListeners("message");
      client.end(true);
      if (established) {
        this.#live = null;
        log.warning("disconnected from {url}", { url: this.#safeUrl });
        o.onClose();
      } else {
        this.failures++;
        o.onAttemptFailed?.(this.#lastError);
      }
      if (this.#stopped) return;
      const delay = backoffDelay(this.#attempt++, {
        minMs: o.reconnectMinMs,
        maxMs: o.reconnectMaxMs,
      });
      this.#timer = setTimeout(() => this.#connect(), delay);
    });
  }

  /**
   * Stops reconnecting; if connected, runs `beforeEnd` (e.g. publish the
   * offline status) and disconnects cleanly, so the broker drops the will.
   */
  async stop(beforeEnd?: (client: MqttClient) => Promise<void>): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    const live = this.#live;
    this.#client = null;
    this.#live = null;
    if (live && beforeEnd) {
      try {
        await beforeEnd(live);
      } catch (err) {
        log.warning("could not finish before disconnecting: {error}", { error: String(err) });
      }
    }
    if (client) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          client.end(true);
          resolve();
        }, 1000);
        client.end(false, {}, () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}
