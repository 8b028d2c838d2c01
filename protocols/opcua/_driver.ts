/**
 * Everything that touches node-opcua: one client, one session, one
 * subscription with a monitored item per point. Loaded with a dynamic
 * `import()` by the adapter, so edged pays for node-opcua (about 125 npm
 * packages) only when an OPC UA adapter is configured.
 *
 * node-opcua re-establishes a lost secure channel by itself and, when the
 * server no longer knows the session (it restarted), creates a new session
 * and re-creates the subscription and its monitored items (OPC 10000-4
 * 6.7, "Re-establishing connections"). The adapter watches the keep-alives
 * and starts over with a fresh client when that repair does not come back.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import {
  AttributeIds,
  ClientMonitoredItemGroup,
  type ClientSession,
  ClientSubscription,
  DataType,
  type DataValue,
  MessageSecurityMode,
  OPCUAClient,
  resolveNodeId,
  SecurityPolicy,
  setErrorLogger,
  setWarningLogger,
  StatusCodes,
  TimestampsToReturn,
  type UserIdentityInfo,
  UserTokenType,
  type Variant,
  VariantArrayType,
} from "node-opcua-client";
import {
  CertificatePurpose,
  createSelfSignedCertificate,
  generatePrivateKey,
  keyOperationsFromPrivateKey,
  makePrivateKeyFromPem,
  privateKeyToPEM,
} from "node-opcua-crypto";
import { getLogger } from "../../lib/mod.ts";
import type { ServerTrust } from "./trust.ts";

const log = getLogger(["edged", "opcua"]);

// node-opcua logs through its own console writers; its warnings are
// diagnostics of the library (the adapter reports what matters itself).
setWarningLogger((...args: unknown[]) => log.debug("node-opcua: {text}", { text: args.join(" ") }));
setErrorLogger((...args: unknown[]) => log.warning("node-opcua: {text}", { text: args.join(" ") }));

/** The user identity presented in ActivateSession (OPC 10000-4 7.36). */
export type Identity =
  | { type: "anonymous" }
  | { type: "username"; username: string; password: string }
  | { type: "certificate"; certificateDer: Uint8Array; privateKeyPem: string };

/** A value as the adapter sees it. */
export interface DecodedValue {
  /** The number (booleans as 1/0), or null when the node's value is not a scalar number. */
  value: number | null;
  /** What the value was when it is not a number (for the decode error). */
  type: string;
  /** The OPC UA status code's name, e.g. `Good`, `BadSensorFailure`. */
  status: string;
  /** Severity of the status code (OPC 10000-4 7.39): good, uncertain or bad. */
  severity: "good" | "uncertain" | "bad";
  /** UTC ms: the source timestamp, else the server timestamp, else now. */
  timestamp: number;
}

/** What the driver reports to the adapter. */
export interface DriverHandlers {
  /** A data change of point `index`. */
  value(index: number, v: DecodedValue): void;
  /** The monitored item of point `index` could not be created (e.g. BadNodeIdUnknown). */
  itemError(index: number, status: string): void;
  /** A publish response (data or keep-alive) arrived: the subscription is alive. */
  alive(): void;
  /** The connection dropped; node-opcua is re-establishing it. */
  lost(reason: string): void;
  /** The connection (and session, and subscription) are back. */
  restored(): void;
}

/** Options for {@linkcode openDriver}. */
export interface DriverOptions {
  endpoint: string;
  securityMode: "None" | "Sign" | "SignAndEncrypt";
  securityPolicy: string;
  applicationUri: string;
  certificateDer: Uint8Array;
  privateKeyPem: string;
  identity: Identity;
  trust: ServerTrust;
  nodeIds: string[];
  publishingIntervalMs: number;
  samplingIntervalMs: number;
  queueSize: number;
  keepAliveCount: number;
  timeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  handlers: DriverHandlers;
}

/** An open session with its subscription. */
export interface Driver {
  /** Writes `value` to point `index`'s node, converted to the node's data type. */
  write(index: number, value: number | boolean): Promise<WriteOutcome>;
  /** Closes subscription, session and channel (best effort, bounded by the timeout). */
  close(): Promise<void>;
}

/** The result of a write: Good, or why not. */
export type WriteOutcome =
  | { ok: true }
  | { ok: false; kind: "invalid_value" | "bad_status" | "connection"; message: string };

/** Thrown when the server's certificate is not trusted; the message says how to trust it. */
export class UntrustedServerError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "UntrustedServerError";
  }
}

const MODES = {
  None: MessageSecurityMode.None,
  Sign: MessageSecurityMode.Sign,
  SignAndEncrypt: MessageSecurityMode.SignAndEncrypt,
} as const;

/**
 * node-opcua asks this store whether to trust the server's certificate
 * (OPC 10000-4 6.1.3). It answers from {@linkcode ServerTrust}: pinned or
 * trusted explicitly, never on first use.
 */
class TrustStore {
  referenceCounter = 0;
  /** Why the last server certificate was refused. */
  refused?: string;
  #trust: ServerTrust;
  constructor(trust: ServerTrust) {
    this.#trust = trust;
  }
  initialize(): Promise<void> {
    return Promise.resolve();
  }
  dispose(): Promise<void> {
    return Promise.resolve();
  }
  /** Asked about the server's certificate before the secure channel opens. */
  async checkCertificate(certificate: Buffer) {
    const r = await this.#trust.check(new Uint8Array(certificate));
    this.refused = r.trusted ? undefined : r.reason;
    return r.trusted ? StatusCodes.Good : StatusCodes.BadCertificateUntrusted;
  }
  getTrustStatus(certificate: Buffer) {
    return this.checkCertificate(certificate);
  }
  /**
   * Asked about edged's own certificate at start (a sanity check that only
   * warns): edged need not trust itself, and the answer is not a refusal
   * of the server.
   */
  async verifyCertificate(certificate: Buffer): Promise<string> {
    const r = await this.#trust.check(new Uint8Array(certificate));
    return r.trusted ? "Good" : "BadCertificateUntrusted";
  }
  trustCertificate(): Promise<void> {
    return Promise.resolve();
  }
  rejectCertificate(): Promise<void> {
    return Promise.resolve();
  }
}

function toUserIdentity(identity: Identity): UserIdentityInfo {
  switch (identity.type) {
    case "anonymous":
      return { type: UserTokenType.Anonymous };
    case "username":
      return {
        type: UserTokenType.UserName,
        userName: identity.username,
        password: identity.password,
      };
    case "certificate":
      return {
        type: UserTokenType.Certificate,
        certificateData: Buffer.from(identity.certificateDer),
        keyOperations: keyOperationsFromPrivateKey(makePrivateKeyFromPem(identity.privateKeyPem)),
      };
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** A request that did not answer within `timeout_ms`. */
export class TimeoutError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "TimeoutError";
  }
}

/** Reads a Variant as a number; null when it is not a scalar number or boolean. */
function decodeVariant(v: Variant | undefined): { value: number | null; type: string } {
  if (!v) return { value: null, type: "Null" };
  const type = DataType[v.dataType] ?? String(v.dataType);
  if (v.arrayType !== VariantArrayType.Scalar) return { value: null, type: `${type}[]` };
  const x = v.value;
  switch (v.dataType) {
    case DataType.Boolean:
      return { value: x ? 1 : 0, type };
    case DataType.SByte:
    case DataType.Byte:
    case DataType.Int16:
    case DataType.UInt16:
    case DataType.Int32:
    case DataType.UInt32:
    case DataType.Float:
    case DataType.Double:
      return { value: Number.isFinite(x) ? x : null, type };
    case DataType.Int64:
    case DataType.UInt64: {
      // node-opcua keeps 64-bit integers as [high, low] 32-bit words.
      if (!Array.isArray(x) || x.length !== 2) return { value: null, type };
      const hi = v.dataType === DataType.Int64 ? x[0] | 0 : x[0] >>> 0;
      return { value: hi * 2 ** 32 + (x[1] >>> 0), type };
    }
    default:
      return { value: null, type };
  }
}

function decode(dv: DataValue): DecodedValue {
  const sc = dv.statusCode ?? StatusCodes.Good;
  const severity = sc.isGood() ? "good" : sc.isBad() ? "bad" : "uncertain";
  const ts = dv.sourceTimestamp ?? dv.serverTimestamp;
  const { value, type } = severity === "bad"
    ? { value: null, type: "none" }
    : decodeVariant(dv.value);
  return {
    value,
    type,
    status: sc.name,
    severity,
    timestamp: ts ? ts.getTime() : Date.now(),
  };
}

const INT_RANGES: Partial<Record<DataType, [number, number]>> = {
  [DataType.SByte]: [-128, 127],
  [DataType.Byte]: [0, 255],
  [DataType.Int16]: [-32768, 32767],
  [DataType.UInt16]: [0, 65535],
  [DataType.Int32]: [-(2 ** 31), 2 ** 31 - 1],
  [DataType.UInt32]: [0, 2 ** 32 - 1],
  [DataType.Int64]: [-(2 ** 53) + 1, 2 ** 53 - 1],
  [DataType.UInt64]: [0, 2 ** 53 - 1],
};

/** Converts a written value to the node's built-in type, or says why it cannot. */
function encodeValue(
  dataType: DataType,
  value: number | boolean,
): { ok: true; value: unknown } | { ok: false; message: string } {
  const name = DataType[dataType] ?? String(dataType);
  if (dataType === DataType.Boolean) {
    if (typeof value === "boolean") return { ok: true, value };
    if (value === 0 || value === 1) return { ok: true, value: value === 1 };
    return { ok: false, message: `the node is Boolean: write true/false or 1/0, got ${value}` };
  }
  const n = typeof value === "boolean" ? (value ? 1 : 0) : value;
  if (!Number.isFinite(n)) return { ok: false, message: `${value} is not a finite number` };
  if (dataType === DataType.Float || dataType === DataType.Double) return { ok: true, value: n };
  const range = INT_RANGES[dataType];
  if (!range) return { ok: false, message: `the node's data type ${name} cannot take a number` };
  if (!Number.isInteger(n) || n < range[0] || n > range[1]) {
    return {
      ok: false,
      message: `the node is ${name}: needs an integer from ${range[0]} to ${range[1]}, got ${n}`,
    };
  }
  if (dataType === DataType.Int64 || dataType === DataType.UInt64) {
    return { ok: true, value: [Math.floor(n / 2 ** 32), n >>> 0] };
  }
  return { ok: true, value: n };
}

/**
 * Connects, opens a session and subscribes to every node. Rejects with
 * {@linkcode UntrustedServerError}, {@linkcode TimeoutError} or the
 * library's error; on rejection nothing is left open.
 */
export async function openDriver(o: DriverOptions): Promise<Driver> {
  const trust = new TrustStore(o.trust);
  const certificate = Buffer.from(o.certificateDer);
  const privateKey = makePrivateKeyFromPem(o.privateKeyPem);
  const client = OPCUAClient.create({
    applicationName: "edged",
    applicationUri: o.applicationUri,
    securityMode: MODES[o.securityMode],
    securityPolicy: SecurityPolicy[o.securityPolicy as keyof typeof SecurityPolicy],
    endpointMustExist: false,
    keepSessionAlive: true,
    requestedSessionTimeout: Math.max(60_000, o.timeoutMs * 6),
    defaultSecureTokenLifetime: 600_000,
    // A silent socket is dead once it missed three keep-alives.
    transportTimeout: 3 * o.keepAliveCount * o.publishingIntervalMs + o.timeoutMs,
    certificateKeyPairProvider: {
      getCertificate: () => certificate,
      getCertificateChain: () => [certificate],
      getPrivateKey: () => privateKey,
    },
    // deno-lint-ignore no-explicit-any
    clientCertificateManager: trust as any,
    // One retry at connect (the adapter's own back-off does the rest); after
    // a connection was established node-opcua retries with these delays.
    connectionStrategy: {
      maxRetry: 1,
      initialDelay: o.reconnectMinMs,
      maxDelay: o.reconnectMaxMs,
      randomisationFactor: 0.5,
    },
  });
  let session: ClientSession | undefined;
  const closeAll = async () => {
    try {
      if (session) await withTimeout(session.close(true), o.timeoutMs, "closing the session");
    } catch { /* the server may be gone */ }
    try {
      await withTimeout(client.disconnect(), o.timeoutMs, "disconnecting");
    } catch { /* nothing left to do */ }
  };
  try {
    try {
      await withTimeout(client.connect(o.endpoint), o.timeoutMs * 3, `connecting to ${o.endpoint}`);
    } catch (err) {
      if (trust.refused) throw new UntrustedServerError(trust.refused);
      throw err;
    }
    session = await withTimeout(
      client.createSession(toUserIdentity(o.identity)),
      o.timeoutMs,
      "creating the session",
    );
    const subscription = ClientSubscription.create(session, {
      requestedPublishingInterval: o.publishingIntervalMs,
      requestedMaxKeepAliveCount: o.keepAliveCount,
      requestedLifetimeCount: o.keepAliveCount * 6,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 10,
    });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        subscription.once("started", () => resolve());
        subscription.once("internal_error", (err: Error) => reject(err));
      }),
      o.timeoutMs,
      "creating the subscription",
    );
    subscription.on("keepalive", () => o.handlers.alive());
    const group = ClientMonitoredItemGroup.create(
      subscription,
      o.nodeIds.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })),
      {
        samplingInterval: o.samplingIntervalMs,
        queueSize: o.queueSize,
        discardOldest: true,
      },
      TimestampsToReturn.Both,
    );
    // Listen before the items exist on the server: the CreateMonitoredItems
    // response and the Publish response carrying each item's initial value
    // can arrive in one read (a busy gateway, a slow link), and node-opcua
    // then emits "changed" in the same turn as "initialized", before any
    // code awaiting "initialized" runs. A listener added after that await
    // misses the initial value, and a node that does not change never sends
    // another: the point would stay empty while the adapter is "connected".
    const index = new Map<unknown, number>(group.monitoredItems.map((item, i) => [item, i]));
    group.on("changed", (item: unknown, dv: DataValue) => {
      const i = index.get(item);
      if (i === undefined) return;
      o.handlers.alive();
      o.handlers.value(i, decode(dv));
    });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        group.once("initialized", () => resolve());
        group.once("err", (msg: string) => reject(new Error(String(msg))));
      }),
      o.timeoutMs,
      "creating the monitored items",
    );
    group.monitoredItems.forEach((item, i) => {
      const sc = item.statusCode;
      if (sc && sc.isBad()) o.handlers.itemError(i, sc.name);
    });
    client.on("connection_lost", () => o.handlers.lost("connection lost"));
    client.on("connection_reestablished", () => o.handlers.restored());

    const types = new Map<number, DataType>();
    return {
      async write(i: number, value: number | boolean): Promise<WriteOutcome> {
        const s = session;
        if (!s || client.isReconnecting) {
          return { ok: false, kind: "connection", message: "not connected to the server" };
        }
        let dataType = types.get(i);
        if (dataType === undefined) {
          dataType = await withTimeout(
            s.getBuiltInDataType(resolveNodeId(o.nodeIds[i])),
            o.timeoutMs,
            "reading the node's data type",
          );
          types.set(i, dataType);
        }
        const enc = encodeValue(dataType, value);
        if (!enc.ok) return { ok: false, kind: "invalid_value", message: enc.message };
        const sc = await withTimeout(
          s.write({
            nodeId: o.nodeIds[i],
            attributeId: AttributeIds.Value,
            value: { value: { dataType, value: enc.value } },
          }),
          o.timeoutMs,
          "writing",
        );
        if (sc.isGood()) return { ok: true };
        const kind = sc.equals(StatusCodes.BadTypeMismatch) || sc.equals(StatusCodes.BadOutOfRange)
          ? "invalid_value"
          : "bad_status";
        return { ok: false, kind, message: `the server refused the write: ${sc.name}` };
      },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/**
 * Generates a self-signed application instance certificate (OPC 10000-6
 * 6.2.2: the application URI in subjectAltName, key usages for signing and
 * encryption, client and server authentication), RSA 2048 with SHA-256.
 */
export async function generateCertificate(
  applicationUri: string,
  commonName: string,
  validityDays: number,
): Promise<{ certificatePem: string; privateKeyPem: string }> {
  const key = await generatePrivateKey(2048);
  const { privPem } = await privateKeyToPEM(key);
  const { cert } = await createSelfSignedCertificate({
    privateKey: key,
    notBefore: new Date(Date.now() - 60_000),
    validity: validityDays,
    subject: `/CN=${commonName}/O=edged`,
    applicationUri,
    dns: [],
    purpose: CertificatePurpose.ForApplication,
  });
  return { certificatePem: cert, privateKeyPem: privPem };
}
